"""Cross-age benchmarks: CACD-VS verification pairs and FG-NET identification across ages.

CACD-VS: 4,000 pairs, pair i is `iiii_0.jpg` / `iiii_1.jpg`, ten identity-disjoint folds of 400
consecutive pairs, the first 200 of each fold genuine. It runs through `PairProtocol` like LFW.

FG-NET (82 people, 1,002 images, ages 0-69): leave-one-image-out identification, the standard
protocol on a set this small. Each image is a probe against every other image; an identity's
score is its best image's cosine, so rank-1 = the nearest other image shows the same person.
Rank-1 is broken down by the age gap to the probe's nearest-age mated gallery image and by the
probe's age group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facerec.core.files import write_json
from facerec.core.plots import pyplot, save_figure
from facerec.data.face_sets import read_fgnet
from facerec.errors import DataError
from facerec.eval.identification import cmc, mated_ranks, scores_per_identity
from facerec.eval.pairs import PairSet
from facerec.pipeline import RecognitionPipeline

# ---- CACD-VS -----------------------------------------------------------------------------------
CACD_PAIRS, CACD_FOLDS = 4000, 10


def cacd_vs_pairs(root: str | Path, pairs: int = CACD_PAIRS, folds: int = CACD_FOLDS) -> PairSet:
    """The CACD-VS pairs of the images in `root` (the raw 250x250 images or an aligned copy with
    the same names)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"CACD-VS folder not found: {root}")
    paths = [root / f"{i:04d}_{side}.jpg" for side in (0, 1) for i in range(pairs)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{root}: {len(missing)} of the {2 * pairs} CACD-VS images are missing (first: {', '.join(missing[:5])}); "
            "pair i is iiii_0.jpg / iiii_1.jpg"
        )
    index = np.arange(pairs)
    same, fold = cacd_vs_labels(pairs, folds)
    return PairSet(index, index + pairs, same, fold, paths, [p.name for p in paths])


def cacd_vs_labels(pairs: int = CACD_PAIRS, folds: int = CACD_FOLDS) -> tuple[np.ndarray, np.ndarray]:
    """(genuine?, fold) of each CACD-VS pair i (iiii_0 / iiii_1): the pairs fall into `folds` runs
    of consecutive pairs (400 each in the published set), the first half of each run genuine."""
    index, per_fold = np.arange(pairs), pairs // folds
    return index % per_fold < per_fold // 2, index // per_fold


# ---- FG-NET ------------------------------------------------------------------------------------
GAP_BUCKETS = ((0, 5), (6, 10), (11, 20), (21, 200))  # years between probe and nearest-age mate
PROBE_AGE_GROUPS = ((0, 12, "child (<13)"), (13, 19, "teen (13-19)"), (20, 200, "adult (20+)"))
MAX_RANK = 10


def leave_one_out_ranks(emb: np.ndarray, persons: np.ndarray) -> np.ndarray:
    """1-based rank of each probe's own person among all persons when every image is a probe
    against all the others (identity score = its best other image; ties count against the probe).
    Rows of `emb` are unit vectors; every person needs two images."""
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)  # a probe never matches itself
    per_id, ids = scores_per_identity(sims, persons)
    own = per_id[np.arange(len(persons)), np.searchsorted(ids, persons)]
    if not np.isfinite(own).all():
        raise DataError("leave-one-out identification needs at least two images of every person")
    return mated_ranks(per_id, ids, persons)


def nearest_mate_gap(persons: np.ndarray, ages: np.ndarray) -> np.ndarray:
    """Years from each image to the nearest-age other image of the same person."""
    gap = np.abs(ages[:, None] - ages[None, :]).astype(float)
    gap[persons[:, None] != persons[None, :]] = np.inf
    np.fill_diagonal(gap, np.inf)
    return gap.min(1)


def rank1_by(ranks: np.ndarray, values: np.ndarray, bins: list[tuple[float, float, str]]) -> dict[str, Any]:
    """Rank-1 rate and probe count for the probes whose value lies in each [low, high] bin."""
    out = {}
    for low, high, name in bins:
        inside = (values >= low) & (values <= high)
        out[name] = {"probes": int(inside.sum()), "rank1": float((ranks[inside] == 1).mean()) if inside.any() else None}
    return out


def fgnet_metrics(emb: np.ndarray, persons: np.ndarray, ages: np.ndarray) -> dict[str, Any]:
    ranks = leave_one_out_ranks(emb, persons)
    curve = cmc(ranks, min(MAX_RANK, len(np.unique(persons))))
    gaps = [(low, high, f"{low}-{high}" if high < 200 else f">{low - 1}") for low, high in GAP_BUCKETS]
    return {
        "rank1": float(curve[0]),
        "rank5": float(curve[min(4, len(curve) - 1)]),
        "rank10": float(curve[-1]),
        "cmc": curve.tolist(),
        "by_age_gap": rank1_by(ranks, nearest_mate_gap(persons, ages), gaps),
        "by_probe_age": rank1_by(ranks, ages, list(PROBE_AGE_GROUPS)),
    }


def fgnet_summary(metrics: dict[str, Any]) -> dict[str, float]:
    summary = {key: metrics[key] for key in ("rank1", "rank5", "rank10")}
    for key in ("by_age_gap", "by_probe_age"):
        for name, cell in metrics[key].items():
            if cell["rank1"] is not None:
                summary[f"rank1_{key[3:]}_{name.split(' ')[0]}"] = cell["rank1"]
    return summary


@dataclass
class FGNetProtocol:
    """Leave-one-image-out identification on FG-NET, with and without flip in one pass."""

    root: str | Path
    name: str = "fgnet"

    def __post_init__(self) -> None:
        self.images, self.odd_names = read_fgnet(self.root)  # read and checked before any model runs

    def evaluate(
        self, pipeline: RecognitionPipeline, out_dir: str | Path | None = None, progress: bool = False
    ) -> dict[str, Any]:
        persons = np.array([image.person for image in self.images])
        ages = np.array([image.age for image in self.images])
        start = time.perf_counter()
        embedded = pipeline.embed([image.path for image in self.images], progress=progress, desc="embedding (fgnet)")
        seconds = time.perf_counter() - start
        report: dict[str, Any] = {
            "protocol": self.name,
            "model": pipeline.model.name,
            "pipeline_options": pipeline.describe(),
            "images": len(self.images),
            "persons": len(np.unique(persons)),
            "ignored_files": self.odd_names,
            "faces_detected": int(embedded.detected.sum()) if pipeline.aligner is not None else None,
            "seconds": seconds,
        }
        for flip in (False, True):
            report["flip" if flip else "no_flip"] = fgnet_metrics(embedded.get(flip), persons, ages)
        report["summary_by_flip"] = {key: fgnet_summary(report[key]) for key in ("no_flip", "flip")}
        report["summary"] = report["summary_by_flip"]["flip" if pipeline.flip else "no_flip"]
        if out_dir is not None:
            out = Path(out_dir)
            plot_fgnet(report, out / "fgnet.png", pipeline.name)
            embedded.save(out / "embeddings.npz", [image.path.name for image in self.images])
            write_json(out / "report.json", report)
        return report


def plot_fgnet(report: dict[str, Any], path: Path, title: str) -> Path:
    """CMC, rank-1 by age gap and by probe age group, with and without flip."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for offset, key in ((-0.2, "no_flip"), (0.2, "flip")):
        metrics, label = report[key], key.replace("_", " ")
        axes[0].plot(np.arange(1, len(metrics["cmc"]) + 1), metrics["cmc"], marker="o", label=label)
        for ax, part in ((axes[1], "by_age_gap"), (axes[2], "by_probe_age")):
            cells = metrics[part]
            values = [cells[name]["rank1"] or 0.0 for name in cells]
            ax.bar(np.arange(len(cells)) + offset, values, width=0.4, label=label)
            ticks = [f"{name}\n(n={cells[name]['probes']})" for name in cells]
            ax.set_xticks(np.arange(len(cells)), ticks)
    axes[0].set(xlabel="rank", ylabel="identification rate", title="CMC")
    axes[1].set(ylabel="rank-1", title="by years to the nearest-age mate")
    axes[2].set(ylabel="rank-1", title="by probe age")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"FG-NET leave-one-out, {title}")
    return save_figure(fig, path)


def fgnet_lines(report: dict[str, Any]) -> list[str]:
    """The report in a few printable lines."""
    lines = [f"FG-NET: {report['images']} images of {report['persons']} people, leave-one-image-out"]
    for key in ("no_flip", "flip"):
        m = report[key]
        gaps = "  ".join(f"{name}: {_rate(cell)}" for name, cell in m["by_age_gap"].items())
        ages = "  ".join(f"{name}: {_rate(cell)}" for name, cell in m["by_probe_age"].items())
        ranks = "  ".join(f"rank-{k} {100 * m[f'rank{k}']:.2f}%" for k in (1, 5, 10))
        lines.append(f"{key:8s} {ranks}")
        lines.append(f"         rank-1 by years to the nearest-age mate  {gaps}")
        lines.append(f"         rank-1 by probe age  {ages}")
    return lines


def _rate(cell: dict[str, Any]) -> str:
    return "-" if cell["rank1"] is None else f"{100 * cell['rank1']:.1f}% (n={cell['probes']})"
