"""1:1 verification: pairs, k-fold accuracy with the threshold chosen on the other folds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facerec.eval.pairs import sample_pairs


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold (score >= t means 'same') maximizing accuracy, and that accuracy.

    Candidates are midpoints between consecutive distinct scores plus both ends, so the
    search is exact; O(n log n).
    """
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], same[order].astype(np.int64)
    n = len(s)
    # accepting everything from position i on: correct = negatives below i + positives from i
    neg_below = np.concatenate([[0], np.cumsum(1 - y)])
    pos_from = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    correct = neg_below + pos_from  # index i = number of rejected pairs
    distinct = np.concatenate([[True], s[1:] != s[:-1], [True]])  # cut only between distinct scores
    correct = np.where(distinct, correct, -1)
    i = int(np.argmax(correct))
    if i == 0:
        t = s[0] - 1e-6
    elif i == n:
        t = s[-1] + 1e-6
    else:
        t = (s[i - 1] + s[i]) / 2
    return float(t), correct[i] / n


@dataclass
class KFoldResult:
    accuracy: float
    std: float
    fold_accuracies: list[float]
    thresholds: list[float]

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "std": self.std,
            "fold_accuracies": self.fold_accuracies,
            "thresholds": self.thresholds,
        }


def evaluation_folds(folds: np.ndarray | int, count: int) -> np.ndarray:
    """The fold of each of `count` pairs that kfold_accuracy uses (its i-th threshold is the
    i-th of these folds in sorted order): `folds` contiguous folds for a number, the given folds,
    or ten interleaved sub-folds when all pairs share one protocol fold."""
    if isinstance(folds, int):
        return np.arange(count) * folds // count
    folds = np.asarray(folds)
    if len(np.unique(folds)) < 2:  # one protocol fold: no other fold to set a threshold on
        return np.arange(count) % 10  # interleaved, so each sub-fold mixes both classes
    return folds


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray | int = 10) -> KFoldResult:
    """Accuracy on each fold at the threshold that is best on the remaining folds.

    `folds` is a fold index per pair (e.g. LFW's ten protocol folds) or a number of
    contiguous folds to cut the pairs into. Pairs from a single protocol fold are split into
    ten interleaved sub-folds.
    """
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    folds = evaluation_folds(folds, len(scores))
    accs, ths = [], []
    for f in np.unique(folds):
        test = folds == f
        t, _ = best_threshold(scores[~test], same[~test])
        accs.append(float(((scores[test] >= t) == same[test]).mean()))
        ths.append(t)
    return KFoldResult(float(np.mean(accs)), float(np.std(accs)), accs, ths)


def verify_embeddings(
    embeddings: np.ndarray, labels: np.ndarray, num_pairs: int = 6000, seed: int = 0, folds: int = 10
) -> KFoldResult:
    """10-fold verification accuracy on random pairs of a labelled embedding set (cosine)."""
    pairs = sample_pairs(labels, num_pairs, seed)
    return kfold_accuracy(pairs.scores(embeddings), pairs.same, folds)
