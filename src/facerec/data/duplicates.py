"""Perceptual hashes of images, near-duplicate search by Hamming distance, and training trees
without the flagged files.

The hash is the DCT pHash of phash.org: the image in grayscale, shrunk to 32x32, its 2-D DCT-II,
the 8x8 block of coefficients just past the lowest row and column (rows and columns 1..8: the
DC term and the pure horizontal / vertical gradients carry overall brightness, not content),
one bit per coefficient: above the block's median. Re-encoding, resizing and small shifts move
few bits; a different photo moves about half of them. The hash compares images in one frame
only: run it on crops aligned the same way (e.g. both sets through `facerec align`), since a
photo cropped differently is a different 32x32 picture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy.fft import dctn
from tqdm import tqdm

from facerec.core.images import is_image_file, require_folder
from facerec.errors import DataError

HASH_SIZE = 32  # the grayscale image the DCT sees
BLOCK = slice(1, 9)  # DCT rows/columns kept: 8x8 = 64 bits, past the DC row and column
BIT_WEIGHTS = (np.uint64(1) << np.arange(64, dtype=np.uint64)).reshape(8, 8)
PAIRS_PER_CHUNK = 1 << 22  # XOR/popcount elements per step: bounds memory at any set size


def phash_of_gray(gray: np.ndarray) -> np.uint64:
    """The 64-bit hash of a HASH_SIZE x HASH_SIZE grayscale array: bit 8*r + c is set when DCT
    coefficient (r+1, c+1) is above the median of the 64 kept coefficients."""
    if gray.shape != (HASH_SIZE, HASH_SIZE):
        raise DataError(f"pHash needs a {HASH_SIZE}x{HASH_SIZE} grayscale array, got shape {gray.shape}")
    coefficients = dctn(gray.astype(np.float64), type=2, norm="ortho")[BLOCK, BLOCK]
    bits = coefficients > np.median(coefficients)
    return np.uint64(BIT_WEIGHTS[bits].sum(dtype=np.uint64))


def gray_thumbnail(image: Image.Image) -> np.ndarray:
    """The image as a HASH_SIZE x HASH_SIZE float grayscale array (antialiased shrink)."""
    small = image.convert("L").resize((HASH_SIZE, HASH_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float64)


def phash_file(path: str | Path) -> np.uint64:
    """The pHash of an image file; a DataError naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            return phash_of_gray(gray_thumbnail(image))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from exc


def hash_files(paths: Sequence[Path], progress: bool = True, desc: str = "pHash") -> np.ndarray:
    """The pHash of every file, as a uint64 array in the order of `paths`."""
    hashes = np.empty(len(paths), dtype=np.uint64)
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress)):
        hashes[i] = phash_file(path)
    return hashes


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of uint64 hashes (broadcast), by popcount of the XOR."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.uint8)


@dataclass
class Matches:
    """Pairs (train index, eval index) with a score; arrays of equal length."""

    train: np.ndarray
    eval: np.ndarray
    score: np.ndarray


def eval_chunks(n_train: int, n_eval: int) -> Iterator[slice]:
    """Slices of the eval set so that each step holds about PAIRS_PER_CHUNK pairs."""
    step = max(1, PAIRS_PER_CHUNK // max(n_train, 1))
    for start in range(0, n_eval, step):
        yield slice(start, min(start + step, n_eval))


def hash_matches(train: np.ndarray, evaluation: np.ndarray, max_distance: int) -> tuple[Matches, np.ndarray]:
    """Every (train, eval) pair within `max_distance` bits, and each eval image's smallest
    distance to the training set (the distribution that calibrates the threshold)."""
    if not len(train) or not len(evaluation):
        raise DataError("near-duplicate search needs images on both sides")
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    nearest = np.empty(len(evaluation), dtype=np.uint8)
    for rows in eval_chunks(len(train), len(evaluation)):
        distances = hamming(evaluation[rows, None], train[None, :])  # (eval chunk, train)
        nearest[rows] = distances.min(axis=1)
        e, t = np.nonzero(distances <= max_distance)
        found.append((t, e + rows.start, distances[e, t]))
    t, e, d = (np.concatenate(column) for column in zip(*found, strict=True))
    return Matches(t, e, d.astype(np.float64)), nearest


# ---- the files of a tree, and the tree without some of them ------------------------------------
def tree_images(root: str | Path, what: str = "image folder") -> list[Path]:
    """Every image file under `root`, flat or in identity folders, following folders that are
    symbolic links (trees of linked people, as `facerec data lfw-people` writes), sorted."""
    root = require_folder(root, what)
    found = (Path(folder) / name for folder, _, names in os.walk(root, followlinks=True) for name in names)
    paths = sorted(path for path in found if is_image_file(path))
    if not paths:
        raise DataError(f"no images under {root}")
    return paths


def write_clean_tree(root: str | Path, paths: Sequence[Path], flagged: set[Path], dst: str | Path) -> int:
    """A copy of the tree at `root` as symbolic links to its files (same relative paths, so
    identity folders are kept), leaving out the `flagged` files; returns the links written."""
    root, dst = Path(root), Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise DataError(f"clean tree destination is not empty: {dst}")
    written = 0
    for path in paths:
        if path in flagged:
            continue
        link = dst / path.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
        written += 1
    return written
