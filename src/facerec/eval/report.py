"""Verification reports: the numbers as a dict (for JSON) and the plots as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facerec.core.plots import pyplot, save_figure
from facerec.eval.metrics import Roc, auc, best_accuracy, eer, roc_curve, tar_at_fars
from facerec.eval.verification import kfold_accuracy

FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def verification_metrics(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict[str, Any]:
    roc = roc_curve(scores, same)
    kfold = kfold_accuracy(scores, same, folds)
    best, threshold = best_accuracy(scores, same)
    return {
        "pairs": len(scores),
        "genuine": roc.positives,
        "impostor": roc.negatives,
        "kfold_accuracy": kfold.accuracy,
        "kfold_std": kfold.std,
        "fold_accuracies": kfold.fold_accuracies,
        "fold_thresholds": kfold.thresholds,
        "best_accuracy": best,
        "best_threshold": threshold,
        "auc": auc(roc),
        "eer": eer(roc),
        "tar_at_far": tar_at_fars(roc, FARS),
    }


def read_published_roc(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A published LFW ROC file: one 'TPR FPR' operating point a line (column order detected:
    the column that is mostly larger is the TPR)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.replace(",", " ").split()
        try:
            a, b = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            continue
        if np.isfinite(a) and np.isfinite(b):
            rows.append((a, b))
    if not rows:
        raise ValueError(f"no operating points in {path}")
    data = np.array(rows)
    tpr_first = (data[:, 0] >= data[:, 1]).mean() >= 0.5
    tpr, fpr = (data[:, 0], data[:, 1]) if tpr_first else (data[:, 1], data[:, 0])
    order = np.argsort(fpr, kind="stable")
    return fpr[order], tpr[order]


def plot_roc(
    curves: dict[str, Roc],
    path: Path,
    published: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    title: str = "ROC",
) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, roc in curves.items():
        ax.plot(np.maximum(roc.fpr, 1e-6), roc.tpr, label=name, linewidth=1.8)
    for name, (fpr, tpr) in (published or {}).items():
        ax.plot(np.maximum(fpr, 1e-6), tpr, "--", label=f"{name} (published)", linewidth=1)
    first = next(iter(curves.values()))
    ax.set_xscale("log")
    ax.set_xlim(max(1e-4, 0.5 / first.negatives), 1)
    ax.set_xlabel("false accept rate (log)")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path, dpi=110)


def plot_score_histogram(
    scores: np.ndarray, same: np.ndarray, path: Path, threshold: float | None = None, title: str = "scores"
) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(scores.min(), scores.max(), 60)
    ax.hist(scores[same], bins=bins, alpha=0.6, label=f"genuine ({same.sum()})", density=True)
    ax.hist(scores[~same], bins=bins, alpha=0.6, label=f"impostor ({(~same).sum()})", density=True)
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle=":", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)
