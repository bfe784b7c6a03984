"""Verification metrics: ROC, AUC, EER, TAR at FAR, best accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Roc:
    fpr: np.ndarray  # false accept rate at each threshold (increasing)
    tpr: np.ndarray  # true accept rate
    thresholds: np.ndarray  # decreasing; accept when score >= threshold
    positives: int
    negatives: int


def roc_curve(scores: np.ndarray, same: np.ndarray) -> Roc:
    """Every operating point, one per distinct score, plus (0, 0) at +inf."""
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ValueError("a ROC needs both genuine and impostor pairs")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    last_of_run = np.r_[s[1:] != s[:-1], True]
    tp, fp = np.cumsum(y)[last_of_run], np.cumsum(~y)[last_of_run]
    p, n = int(y.sum()), int((~y).sum())
    return Roc(np.r_[0.0, fp / n], np.r_[0.0, tp / p], np.r_[np.inf, s[last_of_run]], p, n)


def auc(roc: Roc) -> float:
    return float(np.trapezoid(roc.tpr, roc.fpr))


def eer(roc: Roc) -> float:
    """Equal error rate: where FAR = FRR (1 - TAR), linearly interpolated between points."""
    frr = 1 - roc.tpr
    diff = roc.fpr - frr  # increases from -1 to 1
    i = int(np.searchsorted(diff, 0.0))
    if i == 0:
        return float(roc.fpr[0])
    d0, d1 = diff[i - 1], diff[i]
    w = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(roc.fpr[i - 1] + w * (roc.fpr[i] - roc.fpr[i - 1]))


def tar_at_far(roc: Roc, far: float) -> float | None:
    """Highest TAR with FAR <= far; None when far < 1/negatives (too few impostor pairs to say)."""
    if far < 1.0 / roc.negatives:
        return None
    ok = roc.fpr <= far + 1e-12
    return float(roc.tpr[ok].max())


def best_accuracy(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    from facerec.eval.verification import best_threshold

    t, acc = best_threshold(np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool))
    return acc, t
