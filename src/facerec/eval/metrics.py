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


def not_measurable(trials: int, what: str) -> str:
    """What a report shows instead of a rate that `trials` trials (e.g. '120 impostor pairs')
    cannot resolve: a number there would be a guess."""
    return f"not measurable: {trials} {what}"


def too_few(trials: int, needed: int, what: str) -> str:
    """The same, for a rate with a minimum number of trials: 'too few mated pairs (12 < 20)'."""
    return f"too few {what} ({trials} < {needed})"


def tar_at_fars(roc: Roc, fars: tuple[float, ...]) -> dict[str, float | str]:
    """TAR at each FAR, keyed as '1e-03' prints ('0.001'); a FAR below 1/impostors reads
    'not measurable: N impostor pairs'."""
    table: dict[str, float | str] = {}
    for far in fars:
        value = tar_at_far(roc, far)
        table[f"{far:g}"] = value if value is not None else not_measurable(roc.negatives, "impostor pairs")
    return table


def best_accuracy(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    from facerec.eval.verification import best_threshold

    t, acc = best_threshold(np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool))
    return acc, t
