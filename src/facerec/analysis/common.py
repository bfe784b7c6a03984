"""What every analysis needs: a set of labelled images, their embeddings (cached on disk), and
verification pairs drawn from them."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.core.device import pick_device
from facerec.core.images import identity_tree
from facerec.data.lfw import LFWLayout
from facerec.errors import DataError
from facerec.eval.pairs import Pairs, PairSet, read_lfw_pairs
from facerec.models.io import load_recognition_model
from facerec.pipeline import RecognitionPipeline, rows_by_path

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
    pairs = lfw_pair_set(root, folds)
    fold = np.full(len(pairs.images), -1)
    for side in (pairs.right, pairs.left):
        fold[side] = pairs.fold
    paths = [Path(p) for p in pairs.images]
    return ImageSet(paths, np.array([p.parent.name for p in paths]), fold)


def lfw_pair_set(root: str | Path, folds: list[int] | None = None) -> PairSet:
    layout = LFWLayout.at(root)
    pairs = read_lfw_pairs(layout.pairs_file, layout.images)
    return pairs if folds is None else pairs.select(np.isin(pairs.fold, folds))


def folder_images(root: str | Path) -> ImageSet:
    """root/<identity>/<image> trees."""
    people = identity_tree(root)
    paths = [path for person in people for path in person.images]
    return ImageSet(paths, np.array([person.name for person in people for _ in person.images]))


def cache_file(cache_dir: Path, name: str, digest: str, detector: str, tag: str, paths: list[Path]) -> Path:
    """The cache file of a model (by its content digest) seeing these images through a detector."""
    images = hashlib.sha1("\n".join(str(p) for p in paths).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() else "-" for c in name)[:40]
    return cache_dir / f"{slug}-{digest[:12]}_{detector}_{tag or 'plain'}_{len(paths)}_{images}.npz"


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
    tag: str = "",
    reuse: dict[str, list[Path]] | None = None,
    degrade: int = 0,
    device: str = "auto",
) -> np.ndarray:
    """L2-normalized embeddings of `images` (flip: sum with the mirror image's), computed once
    and kept in `cache_dir`; `reuse` maps a model to .npz files of its embeddings (e.g. from
    `facerec eval lfw`) to take them from when they hold every image. `degrade` scores faces at
    that resolution (tagged in the cache)."""
    tag = tag or (f"lr{degrade}t" if degrade else "")
    if not tag:
        found = _reused(images, (reuse or {}).get(model, []), flip)
        if found is not None:
            return found
    recognition_model = load_recognition_model(model, pick_device(device))
    card = recognition_model.card
    name = card.name or model
    target = cache_file(Path(cache_dir), name, card.digest, detector, tag, images.paths) if cache_dir else None
    if target is not None:
        found = _cached(target, images, flip)
        if found is not None:
            return found
    pipeline = RecognitionPipeline(
        recognition_model, detector, several="central", missing="center", degrade=degrade, device=device
    )
    result = pipeline.embed(images.paths, desc=f"embedding ({model})")
    if target is not None:
        result.save(target, images.paths)
    return result.get(flip)


def _reused(images: ImageSet, files: list[Path], flip: bool) -> np.ndarray | None:
    for candidate in files:
        found = embeddings_from_file(Path(candidate), images.paths, flip)
        if found is not None:
            log.info("embeddings of %d images taken from %s", len(images), candidate)
            return found
    return None


def _cached(target: Path, images: ImageSet, flip: bool) -> np.ndarray | None:
    """This image list's cache file, else any cached list of the same model that covers it."""
    same_model = target.name.rsplit("_", 2)[0]
    for candidate in [target, *sorted(target.parent.glob(f"{same_model}_*.npz"))]:
        found = embeddings_from_file(candidate, images.paths, flip) if candidate.is_file() else None
        if found is not None:
            return found
    return None


def lfw_pairs_over(images: ImageSet, root: str | Path, folds: list[int] | None = None) -> Pairs:
    """LFW View 2 pairs (optionally some folds) as indices into `images`."""
    pairs = lfw_pair_set(root, folds)
    index = {p: i for i, p in enumerate(images.paths)}
    try:
        left = np.array([index[Path(pairs.images[i])] for i in pairs.left])
        right = np.array([index[Path(pairs.images[i])] for i in pairs.right])
    except KeyError as missing:
        raise DataError(f"pair image {missing} is not among the analyzed images") from None
    return Pairs(left, right, pairs.same, pairs.fold)


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
