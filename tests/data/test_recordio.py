"""RecordIO: records built by hand from the format's specification, and a pack/read round trip."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from facerec.data import SyntheticFaces
from facerec.data.datasets import ImageFolderDataset
from facerec.data.recordio import MAGIC, RecordIODataset, pack_folder, read_record, write_record
from facerec.errors import DataError


def spec_record(cflag: int, data: bytes) -> bytes:
    """One record part exactly as dmlc-core lays it out."""
    return struct.pack("<II", MAGIC, (cflag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)


def test_reads_a_hand_built_multi_part_record():
    magic = struct.pack("<I", MAGIC)
    payload = b"abcd" + magic + b"efgh" + magic + b"xyz"
    blob = spec_record(1, b"abcd") + spec_record(2, b"efgh") + spec_record(3, b"xyz")
    assert read_record(io.BytesIO(blob), 0) == payload
    out = io.BytesIO()
    write_record(out, payload)
    assert out.getvalue() == blob  # the writer splits at aligned magic words like dmlc-core


def test_unaligned_magic_stays_in_one_record():
    payload = b"ab" + struct.pack("<I", MAGIC) + b"cd"
    out = io.BytesIO()
    write_record(out, payload)
    assert out.getvalue() == spec_record(0, payload)
    assert read_record(io.BytesIO(out.getvalue()), 0) == payload


def hand_built_insightface_file(tmp_path):
    """record 0: header (flag 2, labels N+1, N+1+K); images; identity ranges; by the spec."""
    images = [SyntheticFaces(2, 2, size=24).render(i) for i in range(4)]
    encoded = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        encoded.append(buf.getvalue())
    payloads = [struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", 5.0, 7.0)]
    payloads += [struct.pack("<IfQQ", 0, float(i // 2), i + 1, 0) + e for i, e in enumerate(encoded)]
    payloads += [struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", a, b) for a, b in ((1, 3), (3, 5))]
    blob, offsets = b"", []
    for p in payloads:
        offsets.append(len(blob))
        blob += spec_record(0, p)
    (tmp_path / "train.rec").write_bytes(blob)
    (tmp_path / "train.idx").write_text("".join(f"{i}\t{o}\n" for i, o in enumerate(offsets)))
    return images


def test_reads_a_hand_built_insightface_file(tmp_path):
    images = hand_built_insightface_file(tmp_path)
    ds = RecordIODataset(tmp_path, input_size=24)
    assert len(ds) == 4 and ds.labels.tolist() == [0, 0, 1, 1]
    for i, img in enumerate(images):
        assert np.array_equal(ds.load(i), img)


def test_pack_and_read_back_identical(tmp_path):
    SyntheticFaces(5, 3, size=32).write_tree(tmp_path / "faces", progress=False)
    pack_folder(tmp_path / "faces", tmp_path / "out" / "train", progress=False)
    folder = ImageFolderDataset(tmp_path / "faces", 32)
    rec = RecordIODataset(tmp_path / "out" / "train.rec", 32)
    assert len(rec) == len(folder) == 15
    assert rec.labels.tolist() == folder.labels.tolist()
    for i in range(len(rec)):
        assert np.array_equal(rec.load(i), folder.load(i))


def test_missing_or_bad_files(tmp_path):
    with pytest.raises(DataError, match="RecordIO file not found"):
        RecordIODataset(tmp_path / "nothing")
    (tmp_path / "train.rec").write_bytes(b"\0" * 16)
    (tmp_path / "train.idx").write_text("0\t0\n")
    with pytest.raises(DataError, match="not a RecordIO record"):
        RecordIODataset(tmp_path)


def test_training_reads_recordio(tmp_path):
    from conftest import tiny
    from facerec.train import Trainer

    SyntheticFaces(10, 4, size=16).write_tree(tmp_path / "faces", progress=False)
    pack_folder(tmp_path / "faces", tmp_path / "train", progress=False)
    cfg = tiny(tmp_path / "run", "data.source=recordio", f"data.root={tmp_path / 'train'}", "train.epochs=1")
    assert Trainer(cfg).fit()["step"] == 4
