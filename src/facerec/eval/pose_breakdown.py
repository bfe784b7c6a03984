"""Verification broken down by the head-yaw difference within a pair.

A pair's |yaw difference| (from pose.tsv files, facerec.align.pose_files) puts it in one range
(0-10, 10-20, 20-30, 30-45, >45 degrees by default). Per range the report gives the genuine and
impostor counts, the accuracy at the protocol's fold thresholds (each pair judged at the
threshold chosen on the other folds, as the k-fold accuracy does), the TAR and TNR at those
thresholds, the TAR at the FARs of the whole protocol's impostors (one operating point for all
pairs, as a deployed system has), and the TAR@FAR of the range's own ROC. A range with fewer than
`min_pairs` genuine or impostor pairs is marked: its numbers are there but say little.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facerec.align.pose_files import YAW_EDGES, PoseTable, angle_statistics, bucket_label, buckets, find_pose_file
from facerec.core.plots import pyplot, save_figure
from facerec.eval.metrics import Roc, roc_curve, tar_at_fars, too_few
from facerec.eval.pairs import PairSet
from facerec.eval.verification import evaluation_folds

MIN_PAIRS = 50  # genuine and impostor pairs a range needs before its rates mean much
FARS = (1e-1, 1e-2, 1e-3)


def fold_decisions(scores: np.ndarray, same: np.ndarray, folds: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Whether each pair is decided correctly at its fold's threshold (the threshold list of
    kfold_accuracy: one per fold of evaluation_folds, in sorted fold order)."""
    fold_of_pair = evaluation_folds(folds, len(scores))
    index = np.searchsorted(np.unique(fold_of_pair), fold_of_pair)
    return (scores >= np.asarray(thresholds)[index]) == same


def threshold_at_far(roc: Roc, far: float) -> float | None:
    """The lowest threshold whose FAR is at most `far` (None: too few impostors to say)."""
    if far < 1.0 / roc.negatives:
        return None
    return float(roc.thresholds[np.flatnonzero(roc.fpr <= far + 1e-12).max()])


def yaw_breakdown(
    scores: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    thresholds: Sequence[float],
    yaw_difference: np.ndarray,
    edges: Sequence[float] = YAW_EDGES,
    min_pairs: int = MIN_PAIRS,
    fars: Sequence[float] = FARS,
) -> dict[str, Any]:
    """The breakdown of one score set; pairs without a yaw difference (NaN) are left out."""
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    correct = fold_decisions(scores, same, folds, thresholds)
    overall = roc_curve(scores, same)
    far_thresholds = {f"{far:g}": threshold_at_far(overall, far) for far in fars}
    known = np.isfinite(yaw_difference)
    rows = []
    for lo, hi in buckets(edges):
        inside = known & (yaw_difference >= lo) & (yaw_difference < hi)
        rows.append(_bucket(lo, hi, scores[inside], same[inside], correct[inside], far_thresholds, min_pairs, fars))
    return {
        "edges": list(edges),
        "min_pairs": min_pairs,
        "pairs_with_pose": int(known.sum()),
        "pairs_without_pose": int((~known).sum()),
        "buckets": rows,
    }


def _bucket(
    lo: float,
    hi: float,
    scores: np.ndarray,
    same: np.ndarray,
    correct: np.ndarray,
    far_thresholds: dict[str, float | None],
    min_pairs: int,
    fars: Sequence[float],
) -> dict[str, Any]:
    genuine, impostor = int(same.sum()), int((~same).sum())
    row: dict[str, Any] = {"range": bucket_label(lo, hi), "low": lo, "high": hi, "genuine": genuine}
    row["impostor"] = impostor
    row["accuracy"] = float(correct.mean()) if len(correct) else None
    row["tar_at_fold_thresholds"] = float(correct[same].mean()) if genuine else None
    row["tnr_at_fold_thresholds"] = float(correct[~same].mean()) if impostor else None
    row["tar_at_overall_far"] = {
        far: (float((scores[same] >= t).mean()) if genuine else None) if t is not None else "not measurable"
        for far, t in far_thresholds.items()
    }
    row["tar_at_far"] = tar_at_fars(roc_curve(scores, same), tuple(fars)) if genuine and impostor else None
    shortfall = [too_few(n, min_pairs, what) for n, what in ((genuine, "genuine pairs"), (impostor, "impostor pairs"))]
    row["too_few"] = "; ".join(s for n, s in zip((genuine, impostor), shortfall, strict=True) if n < min_pairs) or None
    return row


# ---- the pose part of a pair protocol's report -------------------------------------------------
def pair_yaw_differences(pairs: PairSet, table: PoseTable) -> tuple[np.ndarray, np.ndarray]:
    """(yaw per image, |yaw difference| per pair); NaN where an image has no pose."""
    yaws = table.yaws(pairs.images)
    return yaws, np.abs(yaws[pairs.left] - yaws[pairs.right])


def resolve_pose_file(pairs: PairSet, pose_file: str | Path | None) -> Path | None:
    """The pose file to use: the one given, else a pose.tsv beside the images, else none."""
    return Path(pose_file) if pose_file else find_pose_file(pairs.images)


def pose_report(
    pairs: PairSet, pose_file: Path, scores_by_flip: dict[str, np.ndarray], metrics_by_flip: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The report's `pose` section: where the poses came from, the yaw distribution of the
    protocol's images, and the breakdown per flip setting (keys as the report's)."""
    yaws, difference = pair_yaw_differences(pairs, PoseTable.read(pose_file))
    section: dict[str, Any] = {
        "pose_file": str(pose_file),
        "images_with_pose": int(np.isfinite(yaws).sum()),
        "images": len(yaws),
        "yaw": angle_statistics(yaws),
        "yaw_difference": angle_statistics(difference),
    }
    for key, scores in scores_by_flip.items():
        metrics = metrics_by_flip[key]
        section[key] = yaw_breakdown(scores, pairs.same, pairs.fold, metrics["fold_thresholds"], difference)
    return section


def breakdown_summary(breakdown: dict[str, Any]) -> dict[str, float]:
    """Flat summary entries: accuracy per yaw-difference range with enough pairs."""
    return {
        f"accuracy_yaw_diff_{row['range']}": row["accuracy"]
        for row in breakdown["buckets"]
        if row["accuracy"] is not None and row["too_few"] is None
    }


def breakdown_lines(breakdown: dict[str, Any], far: str = "0.01") -> list[str]:
    """A printable table: range, counts, accuracy, TAR at the protocol's FAR `far`."""
    lines = [f"{'|yaw diff|':>10s} {'genuine':>8s} {'impostor':>8s} {'accuracy':>9s} {'TAR@FAR=' + far:>14s}"]
    for row in breakdown["buckets"]:
        acc = f"{100 * row['accuracy']:.2f}%" if row["accuracy"] is not None else "-"
        tar = row["tar_at_overall_far"].get(far)
        tar_text = f"{100 * tar:.2f}%" if isinstance(tar, float) else "-"
        mark = "  (too few pairs)" if row["too_few"] else ""
        lines.append(f"{row['range']:>10s} {row['genuine']:8d} {row['impostor']:8d} {acc:>9s} {tar_text:>14s}{mark}")
    return lines


def plot_breakdown(breakdowns: dict[str, dict[str, Any]], path: str | Path, title: str, far: str = "0.01") -> Path:
    """Accuracy (at the fold thresholds) and TAR at the overall FAR per yaw-difference range,
    one bar group per entry of `breakdowns` (e.g. models, or flip settings); pale bars are
    ranges with too few pairs."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    names = list(breakdowns)
    first = breakdowns[names[0]]["buckets"]
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        rows = breakdowns[name]["buckets"]
        x = np.arange(len(rows)) + (k - (len(names) - 1) / 2) * width
        alpha = [0.35 if row["too_few"] else 0.9 for row in rows]
        for ax, values in zip(axes, _bar_values(rows, far), strict=True):
            bars = ax.bar(x, values, width, color=f"C{k}")
            for bar, a in zip(bars, alpha, strict=True):
                bar.set_alpha(a)
    counts = [f"{row['range']}\n{row['genuine']}/{row['impostor']}" for row in first]
    for ax, ylabel in zip(axes, ("accuracy at fold thresholds", f"TAR at overall FAR {far}"), strict=True):
        ax.set_xticks(np.arange(len(first)), counts, fontsize=8)
        ax.set_xlabel("|yaw difference| (degrees); genuine/impostor pairs")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1.02)
        ax.grid(True, axis="y", alpha=0.3)
    # legend patches at full colour: the first bars may be pale (too few pairs)
    handles = [plt.Rectangle((0, 0), 1, 1, color=f"C{k}") for k in range(len(names))]
    axes[0].legend(handles, names, fontsize=8, loc="lower left")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=110)


def _bar_values(rows: list[dict[str, Any]], far: str) -> tuple[list[float], list[float]]:
    accuracy = [row["accuracy"] if row["accuracy"] is not None else 0.0 for row in rows]
    tar = [v if isinstance(v := row["tar_at_overall_far"].get(far), float) else 0.0 for row in rows]
    return accuracy, tar
