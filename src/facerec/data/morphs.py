"""Face morphs: pixel blends of two aligned faces of different people.

Aligned crops share the five-point template, so a blend of two of them is a plausible face
of neither person. A teacher labels each blend with its own embedding, which gives a
student many more points of the teacher's face space to imitate than the real faces of a
small training set (distillation needs no identity labels). Each morph is written as its
own one-image identity folder `morph_NNNNNN`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facerec.core.files import atomic_path, save_image
from facerec.core.images import decode_image
from facerec.data.datasets import ImageFolderDataset
from facerec.errors import DataError


@dataclass(frozen=True)
class MorphPlan:
    """Which two images each morph blends, and the weight of the first."""

    first: np.ndarray  # index into the source dataset's images
    second: np.ndarray
    weight: np.ndarray  # of the first image; the second gets 1 - weight


def plan_morphs(
    labels: np.ndarray, count: int, seed: int = 0, weights: tuple[float, float] = (0.35, 0.65)
) -> MorphPlan:
    """`count` pairs of images of two different identities, each identity drawn uniformly (so
    that people with hundreds of photographs do not dominate), then one of its images."""
    identities = np.unique(labels)
    if len(identities) < 2:
        raise DataError(f"morphs need at least two identities, the tree has {len(identities)}")
    if count <= 0:
        raise DataError(f"the number of morphs must be positive, got {count}")
    low, high = weights
    if not 0.0 < low <= high < 1.0:
        raise DataError(f"morph weights must satisfy 0 < low <= high < 1, got {weights}")
    rng = np.random.default_rng(seed)
    members = {int(c): np.flatnonzero(labels == c) for c in identities}
    a = rng.choice(identities, count)
    # a different identity for the second image: shift by 1..n-1 positions among the identities
    position = np.searchsorted(identities, a)
    b = identities[(position + rng.integers(1, len(identities), count)) % len(identities)]
    first = np.array([rng.choice(members[int(c)]) for c in a])
    second = np.array([rng.choice(members[int(c)]) for c in b])
    return MorphPlan(first, second, rng.uniform(low, high, count))


def blend(first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    if first.shape != second.shape:
        raise DataError(f"cannot blend crops of shapes {first.shape} and {second.shape}: align them to one size")
    mixed = weight * first.astype(np.float32) + (1.0 - weight) * second.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def write_morphs(
    src: str | Path,
    dst: str | Path,
    count: int,
    seed: int = 0,
    weights: tuple[float, float] = (0.35, 0.65),
    progress: bool = True,
) -> Path:
    """Blend `count` pairs of aligned crops of the tree `src` into `dst/morph_NNNNNN/`, with a
    `morphs.csv` naming the two sources and the weight of each. Existing morphs are kept, so
    an interrupted run resumes."""
    source = ImageFolderDataset(src)
    plan = plan_morphs(source.labels, count, seed, weights)
    root = Path(dst)
    root.mkdir(parents=True, exist_ok=True)
    rows = [["morph", "first", "second", "weight_of_first"]]
    for k in tqdm(range(count), desc="morphs", unit="img", disable=not progress, mininterval=1.0):
        name = f"morph_{k:06d}"
        a, b, w = source.paths[plan.first[k]], source.paths[plan.second[k]], float(plan.weight[k])
        rows.append([name, str(a), str(b), f"{w:.4f}"])
        out = root / name / f"{name}.png"
        if out.is_file():
            continue
        save_image(blend(decode_image(a), decode_image(b), w), out)  # atomic: a resumed run trusts what exists
    with atomic_path(root / "morphs.csv") as tmp, open(tmp, "w", newline="") as table:  # csv quotes paths with commas
        csv.writer(table).writerows(rows)
    return root
