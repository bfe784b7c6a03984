"""Verification pairs: `Pairs` (index pairs over a list of images, with a label and a fold
each) and `PairSet` (pairs that carry their images); readers of LFW pairs files (View 1 and 2),
insightface `.bin` files and a generic pairs CSV; random pairs of a labelled set."""

from __future__ import annotations

import csv
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerec.data.lfw import lfw_image_path
from facerec.errors import DataError


@dataclass
class Pairs:
    """Pairs of images given by their indices into some list of images."""

    left: np.ndarray  # index of each pair's first image
    right: np.ndarray
    same: np.ndarray  # bool: the two images show the same person
    fold: np.ndarray  # protocol fold of each pair

    def __len__(self) -> int:
        return len(self.same)

    def scores(self, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        """Cosine score of each pair: the left image's row of `a` against the right image's
        row of `b` (default `a`); rows are unit vectors."""
        b = a if b is None else b
        return (a[self.left] * b[self.right]).sum(1)


@dataclass
class PairSet(Pairs):
    """Pairs that carry their images: paths (or decoded arrays for .bin files)."""

    images: list = field(default_factory=list)  # unique images: Path or np.ndarray (uint8 RGB)
    names: list[str] = field(default_factory=list)  # printable name per image

    def select(self, keep: np.ndarray) -> PairSet:
        """The pairs where `keep` is true, with only the images they use."""
        left, right = self.left[keep], self.right[keep]
        used = np.unique(np.concatenate([left, right]))
        remap = np.full(len(self.images), -1)
        remap[used] = np.arange(len(used))
        return PairSet(
            remap[left],
            remap[right],
            self.same[keep],
            self.fold[keep],
            [self.images[i] for i in used],
            [self.names[i] for i in used],
        )


def _index(paths: list[Path]) -> tuple[list[Path], np.ndarray]:
    unique: dict[Path, int] = {}
    idx = np.array([unique.setdefault(p, len(unique)) for p in paths], dtype=np.int64)
    return list(unique), idx


def read_lfw_pairs(pairs_file: str | Path, images_root: str | Path) -> PairSet:
    """LFW `pairs.txt` (header 'folds n': each fold n matched then n mismatched lines) or a
    View 1 `pairsDevTest.txt` (header 'n': one fold)."""
    pairs_file, root = Path(pairs_file), Path(images_root)
    if not pairs_file.is_file():
        raise DataError(f"pairs file not found: {pairs_file}")
    lines = [line.split() for line in pairs_file.read_text().splitlines() if line.strip()]
    header = [int(v) for v in lines[0]]
    folds, per_fold = (header[0], header[1]) if len(header) == 2 else (1, header[0])
    body = lines[1:]
    if len(body) != folds * 2 * per_fold:
        raise DataError(f"{pairs_file}: header promises {folds * 2 * per_fold} pairs, found {len(body)} lines")
    a, b, same, fold = [], [], [], []
    for i, parts in enumerate(body):
        if len(parts) == 3:
            a.append(lfw_image_path(root, parts[0], int(parts[1])))
            b.append(lfw_image_path(root, parts[0], int(parts[2])))
            same.append(True)
        elif len(parts) == 4:
            a.append(lfw_image_path(root, parts[0], int(parts[1])))
            b.append(lfw_image_path(root, parts[2], int(parts[3])))
            same.append(False)
        else:
            raise DataError(f"{pairs_file}:{i + 2}: expected 3 or 4 fields, got {len(parts)}")
        fold.append(i // (2 * per_fold))
    return _pairset(a, b, same, fold)


def _pairset(a: list[Path], b: list[Path], same: list[bool], fold: list[int]) -> PairSet:
    missing = next((p for p in a + b if not p.is_file()), None)
    if missing is not None:
        raise DataError(f"image of a pair not found: {missing}")
    images, idx = _index(a + b)
    n = len(a)
    return PairSet(idx[:n], idx[n:], np.array(same), np.array(fold), images, [str(p) for p in images])


def read_pairs_csv(csv_file: str | Path, base: str | Path | None = None) -> PairSet:
    """Lines `path1,path2,label[,fold]` (label 1 = same identity); a header line is allowed;
    relative paths are taken from `base` (default: the CSV's folder)."""
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise DataError(f"pairs CSV not found: {csv_file}")
    base = Path(base) if base else csv_file.parent
    a, b, same, fold = [], [], [], []
    with csv_file.open(newline="") as fh:
        for number, row in enumerate(csv.reader(fh), 1):
            if not row or row[0].startswith("#"):
                continue
            if number == 1 and row[2].strip().lower() in ("label", "same", "issame"):
                continue
            if len(row) not in (3, 4) or row[2].strip() not in ("0", "1"):
                raise DataError(f"{csv_file}:{number}: expected path1,path2,label(0/1)[,fold], got {row}")
            a.append(base / row[0].strip())
            b.append(base / row[1].strip())
            same.append(row[2].strip() == "1")
            fold.append(int(row[3]) if len(row) == 4 else -1)
    if not a:
        raise DataError(f"pairs CSV {csv_file} has no pairs")
    if all(f == -1 for f in fold):  # no folds given: ten contiguous folds
        fold = list(np.arange(len(a)) * 10 // len(a))
    return _pairset(a, b, same, fold)


def read_bin(bin_file: str | Path, folds: int = 10) -> PairSet:
    """insightface verification `.bin`: a pickle of (list of encoded images, issame list);
    images 2i and 2i+1 form pair i; folds are contiguous blocks."""
    from PIL import Image

    bin_file = Path(bin_file)
    if not bin_file.is_file():
        raise DataError(f".bin file not found: {bin_file}")
    try:
        with bin_file.open("rb") as fh:
            bins, issame = pickle.load(fh, encoding="bytes")
    except Exception as exc:
        raise DataError(f"{bin_file} is not an insightface .bin verification file: {exc}") from exc
    if len(bins) != 2 * len(issame):
        raise DataError(f"{bin_file}: {len(bins)} images for {len(issame)} pairs (need 2 per pair)")
    images = []
    for i, raw in enumerate(bins):
        try:
            images.append(np.asarray(Image.open(io.BytesIO(bytes(raw))).convert("RGB")))
        except Exception as exc:
            raise DataError(f"{bin_file}: image {i} cannot be decoded: {exc}") from exc
    n = len(issame)
    return PairSet(
        np.arange(0, 2 * n, 2),
        np.arange(1, 2 * n, 2),
        np.array(issame, dtype=bool),
        np.arange(n) * folds // n,
        images,
        [f"{bin_file.name}#{i}" for i in range(2 * n)],
    )


def write_bin(path: str | Path, images: list[np.ndarray], issame: list[bool]) -> None:
    """Write an insightface-style `.bin` (JPEG-encoded images), e.g. for tests and exports."""
    from PIL import Image

    encoded = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=95)
        encoded.append(buf.getvalue())
    with Path(path).open("wb") as fh:
        pickle.dump((encoded, list(issame)), fh, protocol=4)


def sample_pairs(labels: np.ndarray, count: int, seed: int = 0, folds: int = 10) -> Pairs:
    """`count` pairs of a labelled image set (labels: any hashable per image), half genuine, half
    impostor, drawn with a fixed seed, in random order, cut into `folds` contiguous folds."""
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    by_id = {c: np.flatnonzero(codes == c) for c in np.unique(codes)}
    multi = [c for c, idx in by_id.items() if len(idx) >= 2]
    if not multi or len(by_id) < 2:
        raise DataError("verification pairs need an identity with two images and two identities")
    half = count // 2
    genuine = [tuple(rng.choice(by_id[c], 2, replace=False)) for c in rng.choice(multi, half)]
    impostor: list[tuple[int, int]] = []
    while len(impostor) < count - half:
        i, j = rng.integers(0, len(codes), 2)
        if codes[i] != codes[j]:
            impostor.append((i, j))
    pairs = np.array(genuine + impostor)
    same = np.array([True] * half + [False] * (count - half))
    order = rng.permutation(count)
    return Pairs(pairs[order, 0], pairs[order, 1], same[order], np.arange(count) * folds // max(count, 1))
