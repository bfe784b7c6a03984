"""What every analysis needs: a set of labelled images, their embeddings (cached on disk), and
verification pairs drawn from them."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.errors import DataError
from facerec.eval.protocols import read_lfw_pairs
from facerec.eval.runner import rows_by_path

log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """Images with the identity of each (and, for LFW pairs, the protocol fold it comes from)."""

    paths: list[Path]
    identities: np.ndarray  # str per image
    folds: np.ndarray | None = None  # int per image, -1 when unknown

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, keep: np.ndarray) -> ImageSet:
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return ImageSet(
            [self.paths[i] for i in idx], self.identities[idx], None if self.folds is None else self.folds[idx]
        )

    def identity_codes(self) -> np.ndarray:
        return np.unique(self.identities, return_inverse=True)[1]


def lfw_images(root: str | Path, folds: list[int] | None = None) -> ImageSet:
    """The images of LFW View 2's pairs (all ten folds, or the given 0-based folds); each image's
    fold is that of its first pair (the folds are identity-disjoint, so it is unambiguous)."""
    root = Path(root)
    pairs_file = root / "meta" / "pairs.txt"
    if not pairs_file.is_file():
        raise DataError(f"LFW not found: {pairs_file} is missing (expected ROOT/meta/pairs.txt and ROOT/images/)")
    pairs = read_lfw_pairs(pairs_file, root / "images")
    if folds is not None:
        pairs = pairs.select(np.isin(pairs.fold, folds))
    fold = np.full(len(pairs.images), -1)
    for side in (pairs.right, pairs.left):
        fold[side] = pairs.fold
    paths = [Path(p) for p in pairs.images]
    return ImageSet(paths, np.array([p.parent.name for p in paths]), fold)


def folder_images(root: str | Path) -> ImageSet:
    """root/<identity>/<image> trees."""
    from facerec.data.datasets import ImageFolderDataset

    dataset = ImageFolderDataset(root)
    paths = [Path(p) for p in dataset.paths]
    return ImageSet(paths, np.array([p.parent.name for p in paths]))


def cache_file(cache_dir: Path, model: str, detector: str, tag: str, paths: list[Path]) -> Path:
    digest = hashlib.sha1("\n".join(str(p) for p in paths).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() else "-" for c in Path(model).stem)[:40]
    file = Path(model)
    if file.is_file():  # a model file: its place and version are part of its name
        stat = file.stat()
        slug += "-" + hashlib.sha1(f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:8]
    return cache_dir / f"{slug}_{detector}_{tag or 'plain'}_{len(paths)}_{digest}.npz"


def embeddings_from_file(path: Path, paths: list[Path], flip: bool) -> np.ndarray | None:
    """Rows of an embeddings .npz (from `facerec eval` or this cache) for `paths`, matched by
    name; None when some image is missing from it."""
    data = np.load(path)
    index = rows_by_path(data["names"].tolist())
    rows = [index.get(str(Path(p).resolve())) for p in paths]
    if any(r is None for r in rows):
        return None
    return data["flipped" if flip else "plain"][np.array(rows)]


def embed(
    images: ImageSet,
    model: str,
    detector: str = "mtcnn",
    cache_dir: str | Path | None = None,
    flip: bool = True,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    tag: str = "",
    reuse: dict[str, list[Path]] | None = None,
) -> np.ndarray:
    """L2-normalized embeddings of `images` (flip: sum with the mirror image's), computed once
    and kept in `cache_dir`; `reuse` maps a model to .npz files of its embeddings (e.g. from
    `facerec eval lfw`) to take them from when they hold every image. `tag` names a crop
    `transform` in the cache."""
    from facerec.cli import build_aligner
    from facerec.eval.runner import embed_images
    from facerec.models.io import load_embedder

    if not tag:
        for candidate in (reuse or {}).get(model, []):
            found = embeddings_from_file(Path(candidate), images.paths, flip)
            if found is not None:
                log.info("embeddings of %d images taken from %s", len(images), candidate)
                return found
    target = cache_file(Path(cache_dir), model, detector, tag, images.paths) if cache_dir else None
    if target is not None:  # this image list, else any cached list of the same model that covers it
        same_model = target.name.rsplit("_", 2)[0]
        for candidate in [target, *sorted(target.parent.glob(f"{same_model}_*.npz"))]:
            found = embeddings_from_file(candidate, images.paths, flip) if candidate.is_file() else None
            if found is not None:
                return found
    embedder = load_embedder(model)
    result = embed_images(
        images.paths, embedder, build_aligner(detector, embedder), transform=transform, desc=f"embedding ({model})"
    )
    if target is not None:
        result.save(target, images.paths)
    return result.get(flip)


@dataclass
class Pairs:
    left: np.ndarray
    right: np.ndarray
    same: np.ndarray
    fold: np.ndarray


def lfw_pairs_over(images: ImageSet, root: str | Path, folds: list[int] | None = None) -> Pairs:
    """LFW View 2 pairs (optionally some folds) as indices into `images`."""
    root = Path(root)
    pairs = read_lfw_pairs(root / "meta" / "pairs.txt", root / "images")
    if folds is not None:
        pairs = pairs.select(np.isin(pairs.fold, folds))
    index = {p: i for i, p in enumerate(images.paths)}
    try:
        left = np.array([index[Path(pairs.images[i])] for i in pairs.left])
        right = np.array([index[Path(pairs.images[i])] for i in pairs.right])
    except KeyError as missing:
        raise DataError(f"pair image {missing} is not among the analyzed images") from None
    return Pairs(left, right, pairs.same, pairs.fold)


def sample_pairs(identities: np.ndarray, count: int, seed: int = 0, folds: int = 10) -> Pairs:
    """`count` verification pairs from labelled images, half genuine, in random order, cut into
    `folds` contiguous folds."""
    from facerec.eval.verification import sample_pairs as draw

    codes = np.unique(identities, return_inverse=True)[1]
    left, right, same = draw(codes, count, seed)
    fold = np.arange(len(same)) * folds // max(len(same), 1)
    return Pairs(left, right, same, fold)


def cosine_scores(a: np.ndarray, b: np.ndarray, pairs: Pairs) -> np.ndarray:
    """Score of each pair: left image's row of `a` against right image's row of `b`."""
    return (a[pairs.left] * b[pairs.right]).sum(1)


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
