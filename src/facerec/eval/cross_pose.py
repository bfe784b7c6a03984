"""A cross-pose verification pair set built from any tree of faces with poses.

Genuine pairs are two images of one person whose yaws differ by at least `min_yaw_diff`
degrees (at most `per_person` pairs a person, drawn at random among those, so that people with
hundreds of images do not fill the set). People are dealt into ten folds, each person in one
fold only (identity-disjoint folds, as LFW's), balancing the genuine pairs per fold. Each
genuine pair gets one impostor pair from the same fold: two images of different people whose
yaw difference is within `tolerance` degrees of the genuine pair's, so that genuine and impostor
pairs share one yaw-difference distribution and a model cannot tell them apart by pose alone.

The output is the pairs-CSV format of facerec.eval.pairs (`path1,path2,label,fold`, paths
relative to the CSV's folder), with a JSON summary and a PNG of the two yaw-difference
distributions beside it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerec.align.pose_files import POSE_FILE, PoseTable, angle_statistics
from facerec.core.files import write_json, write_text
from facerec.core.images import image_files, require_folder
from facerec.core.plots import pyplot, save_figure
from facerec.data.lfw import people_of_folds
from facerec.errors import DataError

FOLDS = 10


@dataclass(frozen=True)
class PosedImage:
    path: Path
    person: str
    yaw: float


@dataclass
class CrossPosePairs:
    """Pairs as indices into `images`; fold per pair; `same` per pair."""

    images: list[PosedImage]
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    same: list[bool] = field(default_factory=list)
    fold: list[int] = field(default_factory=list)
    unmatched: int = 0  # genuine pairs left out: no impostor pair of their yaw difference in the fold

    def add(self, i: int, j: int, same: bool, fold: int) -> None:
        self.left.append(i)
        self.right.append(j)
        self.same.append(same)
        self.fold.append(fold)

    def yaw_differences(self) -> np.ndarray:
        return np.array(
            [abs(self.images[i].yaw - self.images[j].yaw) for i, j in zip(self.left, self.right, strict=True)]
        )


# ---- who is who ---------------------------------------------------------------------------------
def read_people(path: str | Path, folds: list[int] | None = None) -> set[str]:
    """Names from a file: one per line (first field), or, with `folds`, the people of those
    folds of an LFW people.txt."""
    path = Path(path)
    if folds:
        return set(people_of_folds(path, folds))
    if not path.is_file():
        raise DataError(f"people file not found: {path}")
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def read_labels(path: str | Path) -> dict[str, str]:
    """{file name: identity} from 'file identity' lines (e.g. CelebA's identity_CelebA.txt; a
    header line of other fields is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file not found: {path}")
    labels = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            labels[parts[0]] = parts[1]
    if not labels:
        raise DataError(f"{path}: no 'file identity' lines")
    return labels


def posed_images(
    tree: str | Path, poses: PoseTable, people: set[str] | None = None, labels: dict[str, str] | None = None
) -> list[PosedImage]:
    """The tree's images that have a pose, with their person: the identity folder, or, with
    `labels`, the identity of the file name (for flat trees); only `people` when given. Images
    are looked up by file name with any extension (aligned copies may be .png)."""
    tree = require_folder(tree, "image tree")
    out = []
    for path in image_files(tree):
        person = _person(path, tree, labels)
        if person is None or (people is not None and person not in people):
            continue
        row = poses.get(path)
        if row is not None and row.pose is not None:
            out.append(PosedImage(path, person, row.pose.yaw))
    if not out:
        raise DataError(f"no image under {tree} has a pose (and a person among those asked for)")
    return out


def _person(path: Path, tree: Path, labels: dict[str, str] | None) -> str | None:
    if labels is None:
        return path.parent.name if path.parent != tree else None
    return labels.get(path.name) or labels.get(path.stem + ".jpg")


# ---- the pairs ---------------------------------------------------------------------------------
def genuine_candidates(images: list[PosedImage], min_yaw_diff: float) -> dict[str, list[tuple[int, int]]]:
    """{person: every pair of their images (indices) with |yaw difference| >= min_yaw_diff}."""
    by_person: dict[str, list[int]] = defaultdict(list)
    for k, image in enumerate(images):
        by_person[image.person].append(k)
    out = {}
    for person, idx in sorted(by_person.items()):
        yaws = np.array([images[k].yaw for k in idx])
        a, b = np.nonzero(np.abs(yaws[:, None] - yaws[None, :]) >= min_yaw_diff)
        out[person] = [(idx[i], idx[j]) for i, j in zip(a, b, strict=True) if i < j]
    return out


def deal_folds(counts: dict[str, int], rng: np.random.Generator, folds: int = FOLDS) -> dict[str, int]:
    """Each person into one fold: the people with most genuine pairs first, each into the fold
    with fewest pairs so far (ties at random); people without pairs dealt in turn."""
    people = list(counts)
    rng.shuffle(people)
    people.sort(key=lambda p: -counts[p])  # stable: the shuffle breaks ties
    load, fold_of = np.zeros(folds), {}
    for k, person in enumerate(people):
        fold = int(np.argmin(load + rng.random(folds) * 1e-3)) if counts[person] else k % folds
        fold_of[person] = fold
        load[fold] += counts[person]
    return fold_of


def match_impostor(
    images: list[PosedImage],
    pool: np.ndarray,
    target: float,
    tolerance: float,
    used: set[tuple[int, int]],
    rng: np.random.Generator,
    tries: int = 200,
) -> tuple[int, int] | None:
    """Two images of different people from `pool` (indices) whose |yaw difference| is within
    `tolerance` of `target`, not yet used; None when `tries` random first images find none."""
    yaws = np.array([images[k].yaw for k in pool])
    persons = np.array([images[k].person for k in pool])
    for first in rng.integers(0, len(pool), tries):
        fits = (np.abs(np.abs(yaws - yaws[first]) - target) <= tolerance) & (persons != persons[first])
        options = np.flatnonzero(fits)
        rng.shuffle(options)
        for second in options:
            pair = tuple(sorted((int(pool[first]), int(pool[second]))))
            if pair not in used:
                return pair[0], pair[1]
    return None


def build_cross_pose_pairs(
    images: list[PosedImage],
    min_yaw_diff: float = 25.0,
    per_person: int = 10,
    tolerance: float = 2.5,
    seed: int = 0,
) -> CrossPosePairs:
    """The pair set (see the module docstring); genuine pairs whose impostor cannot be matched
    within the tolerance are dropped with it, so every fold stays balanced."""
    rng = np.random.default_rng(seed)
    candidates = genuine_candidates(images, min_yaw_diff)
    chosen = {p: _sample(c, per_person, rng) for p, c in candidates.items()}
    fold_of = deal_folds({p: len(c) for p, c in chosen.items()}, rng)
    pairs, used = CrossPosePairs(images), set()
    for fold in range(FOLDS):
        pool = np.array([k for k, image in enumerate(images) if fold_of[image.person] == fold])
        genuine = [pair for person in sorted(chosen) if fold_of[person] == fold for pair in chosen[person]]
        for i, j in genuine:
            target = abs(images[i].yaw - images[j].yaw)
            impostor = match_impostor(images, pool, target, tolerance, used, rng) if len(pool) > 1 else None
            if impostor is None:
                pairs.unmatched += 1
                continue
            used.add(impostor)
            pairs.add(i, j, True, fold)
            pairs.add(*impostor, False, fold)
    if not pairs.same:
        raise DataError(f"no genuine pair with a yaw difference of {min_yaw_diff} degrees or more")
    return pairs


def _sample(pairs: list[tuple[int, int]], count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    if len(pairs) <= count:
        return pairs
    return [pairs[k] for k in sorted(rng.choice(len(pairs), count, replace=False))]


# ---- output ---------------------------------------------------------------------------------------
def write_cross_pose_pairs(pairs: CrossPosePairs, out: str | Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The CSV (pairs ordered by fold, genuine and impostor interleaved), OUT.json and OUT.png."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(pairs.same)), key=lambda k: (pairs.fold[k], k))
    lines = ["path1,path2,label,fold\n", f"# made by: {command_line(settings)}\n"]
    for k in order:
        a, b = (_relative(pairs.images[n].path, out.parent) for n in (pairs.left[k], pairs.right[k]))
        lines.append(f"{a},{b},{int(pairs.same[k])},{pairs.fold[k]}\n")
    write_text(out, "".join(lines))
    summary = cross_pose_summary(pairs, settings)
    write_json(out.with_suffix(".json"), summary)
    plot_yaw_differences(pairs, out.with_suffix(".png"))
    return summary


def command_line(settings: dict[str, Any]) -> str:
    """The `facerec data cross-pose-pairs` command that `settings` (make_cross_pose_pairs's
    arguments) stand for."""
    flags = {"pose_file": "--pose", "people_file": "--people", "labels_file": "--labels"}
    words = ["facerec data cross-pose-pairs", str(settings["tree"]), "--out", str(settings["out"])]
    for key, value in settings.items():
        if key in ("tree", "out") or value is None:
            continue
        flag = flags.get(key, "--" + key.replace("_", "-").replace("people-folds", "folds"))
        words += [flag, " ".join(map(str, value)) if isinstance(value, list) else str(value)]
    return " ".join(words)


def _relative(path: Path, folder: Path) -> str:
    text = os.path.relpath(path.resolve(), folder.resolve())
    if "," in text:
        raise DataError(f"a path with a comma cannot go into a pairs CSV: {path}")
    return Path(text).as_posix()


def cross_pose_summary(pairs: CrossPosePairs, settings: dict[str, Any]) -> dict[str, Any]:
    same, fold = np.array(pairs.same), np.array(pairs.fold)
    diff = pairs.yaw_differences()
    people = {pairs.images[i].person for i in pairs.left + pairs.right}
    return {
        "settings": settings,
        "pairs": len(same),
        "genuine": int(same.sum()),
        "impostor": int((~same).sum()),
        "genuine_left_out_unmatched": pairs.unmatched,
        "people": len(people),
        "images": len(set(pairs.left + pairs.right)),
        "pairs_per_fold": [int((fold == f).sum()) for f in range(FOLDS)],
        "genuine_yaw_difference": angle_statistics(diff[same]),
        "impostor_yaw_difference": angle_statistics(diff[~same]),
    }


def plot_yaw_differences(pairs: CrossPosePairs, path: Path) -> Path:
    same, diff = np.array(pairs.same), pairs.yaw_differences()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.arange(0, max(diff.max(), 10) + 5, 5)
    ax.hist(diff[same], bins=bins, alpha=0.6, label=f"genuine ({same.sum()})")
    ax.hist(diff[~same], bins=bins, alpha=0.6, label=f"impostor ({(~same).sum()})")
    ax.set_xlabel("|yaw difference| within a pair (degrees)")
    ax.set_ylabel("pairs")
    ax.set_title(f"cross-pose pairs: {len(same)} in {FOLDS} identity-disjoint folds")
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)


def make_cross_pose_pairs(
    tree: str | Path,
    out: str | Path,
    pose_file: str | Path | None = None,
    people_file: str | Path | None = None,
    people_folds: list[int] | None = None,
    labels_file: str | Path | None = None,
    min_yaw_diff: float = 25.0,
    per_person: int = 10,
    tolerance: float = 2.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything `facerec data cross-pose-pairs` does: read the poses (default TREE/pose.tsv),
    people and labels, build the pairs, write OUT, OUT.json and OUT.png; returns the summary."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}
    poses = PoseTable.read(pose_file or Path(tree) / POSE_FILE)
    people = read_people(people_file, people_folds) if people_file else None
    labels = read_labels(labels_file) if labels_file else None
    images = posed_images(tree, poses, people, labels)
    pairs = build_cross_pose_pairs(images, min_yaw_diff, per_person, tolerance, seed)
    return write_cross_pose_pairs(pairs, out, settings)
