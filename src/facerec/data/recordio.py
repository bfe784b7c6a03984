"""insightface's MXNet RecordIO training format, read and written without MXNet.

Files: `train.rec` (records) and `train.idx` (lines `index<TAB>byte offset`).

A record is: uint32 magic 0xced7230a, uint32 (cflag << 29 | length), the payload, zero
padding to a multiple of 4. A payload that contains the magic word at a 4-aligned position
is stored in parts (cflag 1 = first, 2 = middle, 3 = last) with that word removed; a reader
re-inserts it between parts (dmlc-core's recordio).

Image payloads (mxnet.recordio.pack): a header struct `IfQQ` = (flag, label, id, id2),
followed by `flag` float32 labels when flag > 0, then the encoded image. insightface's layout:
record 0 has flag 2 and labels (N + 1, N + 1 + K) for N images and K identities; records
1..N are images (label = identity); records N+1 .. N+K are identities whose two labels are the
[start, end) range of their image records.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from facerec.core.files import atomic_path, write_text
from facerec.core.images import identity_tree
from facerec.data.datasets import FaceDataset
from facerec.errors import DataError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER = struct.Struct("<IfQQ")


# ---- records ------------------------------------------------------------------------------
def write_record(fh: BinaryIO, data: bytes) -> int:
    """Append one record; returns its byte offset."""
    offset = fh.tell()
    start = 0
    for i in range(0, len(data) - len(data) % 4, 4):
        if data[i : i + 4] == MAGIC_BYTES:
            _write_part(fh, 1 if start == 0 else 2, data[start:i])
            start = i + 4
    _write_part(fh, 0 if start == 0 else 3, data[start:])
    return offset


def _write_part(fh: BinaryIO, cflag: int, part: bytes) -> None:
    fh.write(struct.pack("<II", MAGIC, (cflag << 29) | len(part)))
    fh.write(part)
    fh.write(b"\0" * (-len(part) % 4))


def read_record(fh: BinaryIO, offset: int) -> bytes:
    fh.seek(offset)
    parts = []
    while True:
        head = fh.read(8)
        if len(head) < 8:
            raise DataError(f"truncated RecordIO file at byte {fh.tell()}")
        magic, word = struct.unpack("<II", head)
        if magic != MAGIC:
            raise DataError(f"not a RecordIO record at byte {fh.tell() - 8} (magic {magic:#x})")
        cflag, length = word >> 29, word & ((1 << 29) - 1)
        parts.append(fh.read(length))
        fh.read(-length % 4)
        if cflag in (0, 3):
            return MAGIC_BYTES.join(parts)


def pack_payload(label: float | tuple[float, ...], image: bytes = b"", ident: int = 0) -> bytes:
    labels = (label,) if isinstance(label, int | float) else tuple(label)
    if len(labels) == 1:
        return HEADER.pack(0, float(labels[0]), ident, 0) + image
    return HEADER.pack(len(labels), 0.0, ident, 0) + struct.pack(f"<{len(labels)}f", *labels) + image


def unpack_payload(payload: bytes) -> tuple[tuple[float, ...], bytes]:
    flag, label, _, _ = HEADER.unpack_from(payload)
    if flag == 0:
        return (label,), payload[HEADER.size :]
    end = HEADER.size + 4 * flag
    return struct.unpack_from(f"<{flag}f", payload, HEADER.size), payload[end:]


def read_index(idx_path: Path) -> dict[int, int]:
    index = {}
    for number, line in enumerate(idx_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{idx_path}:{number}: expected 'index offset', got {line!r}")
        index[int(parts[0])] = int(parts[1])
    if not index:
        raise DataError(f"{idx_path} is empty")
    return index


# ---- dataset ------------------------------------------------------------------------------
def rec_paths(prefix: str | Path) -> tuple[Path, Path]:
    """`data/train` or `data/train.rec` or a folder holding train.rec/train.idx."""
    prefix = Path(prefix)
    if prefix.is_dir():
        prefix = prefix / "train"
    if prefix.suffix in (".rec", ".idx"):
        prefix = prefix.with_suffix("")
    rec, idx = prefix.with_suffix(".rec"), prefix.with_suffix(".idx")
    for path in (rec, idx):
        if not path.is_file():
            raise DataError(f"RecordIO file not found: {path}")
    return rec, idx


class RecordIODataset(FaceDataset):
    """Images and identity labels from an insightface train.rec/train.idx pair."""

    def __init__(self, prefix: str | Path, input_size: int = 112) -> None:
        super().__init__(input_size)
        self.rec_path, idx_path = rec_paths(prefix)
        self.offsets = read_index(idx_path)
        self._fh: BinaryIO | None = None
        labels0, _ = unpack_payload(self.read(0))
        if len(labels0) >= 2:  # insightface header: images 1..N, identity records after
            first_id, end_id = int(labels0[0]), int(labels0[1])
            self.records = np.arange(1, first_id)
            labels = np.empty(len(self.records), dtype=np.int64)
            for k, rec in enumerate(range(first_id, end_id)):
                (start, stop), _ = unpack_payload(self.read(rec))
                labels[int(start) - 1 : int(stop) - 1] = k
        else:  # plain list of image records: read every header
            self.records = np.array(sorted(self.offsets))
            labels = np.array([int(unpack_payload(self.read(int(r)))[0][0]) for r in self.records])
        uniques, self.labels = np.unique(labels, return_inverse=True)
        self.class_names = [str(int(u)) for u in uniques]

    def read(self, record: int) -> bytes:
        if self._fh is None:  # opened lazily: each DataLoader worker gets its own handle
            self._fh = self.rec_path.open("rb")
        if record not in self.offsets:
            raise DataError(f"{self.rec_path}: record {record} is not in the index")
        return read_record(self._fh, self.offsets[record])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fh"] = None
        return state

    def load(self, index: int) -> np.ndarray:
        import io

        from PIL import Image

        _, image = unpack_payload(self.read(int(self.records[index])))
        try:
            with Image.open(io.BytesIO(image)) as img:
                return np.asarray(img.convert("RGB"))
        except Exception as exc:
            raise DataError(f"{self.rec_path}: record {self.records[index]} is not a decodable image: {exc}") from exc

    def describe(self, index: int) -> str:
        return f"{self.rec_path}#{self.records[index]}"


# ---- writer -------------------------------------------------------------------------------
def pack_folder(root: str | Path, prefix: str | Path, progress: bool = True) -> tuple[Path, Path]:
    """Pack root/<identity>/<image> into prefix.rec + prefix.idx in insightface's layout.
    Image files are stored as they are (their encoded bytes); identities are numbered in
    sorted folder order."""
    from tqdm import tqdm

    people = identity_tree(root, "folder")
    rec, idx = Path(prefix).with_suffix(".rec"), Path(prefix).with_suffix(".idx")
    n_images = sum(len(person.images) for person in people)
    offsets = []
    with atomic_path(rec) as tmp, tmp.open("wb") as fh:
        offsets.append(write_record(fh, pack_payload((n_images + 1.0, n_images + 1.0 + len(people)))))
        ranges, next_record = [], 1
        bar = tqdm(total=n_images, unit="img", desc="packing", disable=not progress)
        for label, person in enumerate(people):
            ranges.append((next_record, next_record + len(person.images)))
            for path in person.images:
                offsets.append(write_record(fh, pack_payload(float(label), path.read_bytes(), next_record)))
                next_record += 1
                bar.update()
        bar.close()
        for start, stop in ranges:
            offsets.append(write_record(fh, pack_payload((float(start), float(stop)))))
    write_text(idx, "".join(f"{i}\t{off}\n" for i, off in enumerate(offsets)))
    return rec, idx
