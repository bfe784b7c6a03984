"""Calibration: the threshold a verification pipeline needs for a target false-match rate on the
operator's own data, and how sure that number is.

Convention (as in `eval.metrics` and `serve.recognizer`): a pair is accepted as the same person
when its cosine score is >= the threshold. Over n impostor (non-mated) pairs the empirical
false-match rate of a threshold t is FMR(t) = #{impostor score >= t} / n, and over the mated
pairs FNMR(t) = #{genuine score < t} / #mated.

The calibrated threshold for a target FAR is **the smallest impostor score s with
FMR(s) <= FAR**. With k = floor(FAR * n) and no ties it is the k-th highest impostor score
(FMR(s) = k / n); a tie that would push the count past k moves it up to the next distinct score.
Only impostor scores are candidates, so the threshold does not depend on the genuine pairs.

Too few impostor pairs: with n < 1 / FAR every impostor score s has FMR(s) >= 1/n > FAR, so
the threshold would lie somewhere above the highest impostor score and the data cannot say
where: no threshold is given. With fewer than 30 false matches expected at the target
(n < 30 / FAR, Doddington's "rule of 30"), the threshold is given with a warning: the FMR
behind it is then known to worse than +-30% at 90% confidence.

Confidence intervals (percentile bootstrap). Pairs that share a person are not independent:
one person who looks like many others makes many false matches. So, when the subject of every
image is known, **subjects** are resampled with replacement: a mated pair weighs its subject's
draw count, an impostor pair of subjects a and b the product of theirs (every pair between a
copy of a and a copy of b: the "subsets bootstrap" of Bolle, Ratha and Pankanti, 2004). When
the subjects are not known, **pairs** are resampled: each pair gets a Poisson(1) weight (the
Poisson bootstrap, which approximates multinomial resampling of the pairs and needs no list of
the pairs that cannot matter). Each resample gives the FMR and FNMR at the calibrated threshold
(their intervals: where the true rates of that threshold lie) and the threshold recalibrated
on the resample (its interval: how far another sample of people would move it).

Only the highest impostor scores are kept (`tail_size`): the threshold, the false matches at
it and every resample's threshold lie among them; a uniform sample of all impostor scores is
kept for the plots.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from facerec.errors import DataError

RULE_OF_30 = 30  # false matches expected at the target for a +-30% (90%) FMR


# ---- the scored pairs ------------------------------------------------------------------------
class ImpostorPool(Protocol):
    """Every impostor pair's subjects, summarized: the resampled count of impostor pairs."""

    def total(self, weights: np.ndarray) -> np.ndarray:
        """Impostor pairs in each resample, given subject draw counts `weights` (resamples, subjects)."""
        ...


@dataclass
class CrossPairs:
    """All pairs of images of two different subjects of an identity tree."""

    sizes: np.ndarray  # images of each subject

    def total(self, weights: np.ndarray) -> np.ndarray:
        n = self.sizes.astype(np.float64)
        drawn = weights @ n
        return (drawn**2 - (weights**2) @ (n**2)) / 2  # unordered pairs of distinct subjects


@dataclass
class ListedPairs:
    """The impostor pairs of a pairs list: distinct (subject, subject) pairs and how often each occurs."""

    pairs: np.ndarray  # (m, 2) subject codes
    counts: np.ndarray  # (m,)

    def total(self, weights: np.ndarray) -> np.ndarray:
        return (weights[:, self.pairs[:, 0]] * weights[:, self.pairs[:, 1]]) @ self.counts.astype(np.float64)


@dataclass
class Trials:
    """The scored comparisons of one data set, with the subjects behind them."""

    genuine: np.ndarray  # score of each mated pair
    genuine_subject: np.ndarray  # subject code of each mated pair
    impostor: np.ndarray  # the highest impostor scores (all when len == impostor_count), descending
    impostor_subjects: np.ndarray  # (len(impostor), 2) subject codes of each
    impostor_count: int  # impostor pairs in all
    pool: ImpostorPool | None  # None: subjects unknown, pairs are resampled
    subjects: int = 0  # subject codes are 0 .. subjects - 1
    sample: np.ndarray = field(default_factory=lambda: np.zeros(0))  # uniform sample of all impostor scores
    unit_note: str = ""  # why pairs, not subjects, are resampled

    @property
    def by_subject(self) -> bool:
        return self.pool is not None


def tail_size(impostors: int, far: float, margin: float = 4.0, extra: int = 200) -> int:
    """How many of the highest impostor scores to keep: `margin` times those above the threshold,
    plus `extra`, for the resamples whose threshold falls lower."""
    return min(impostors, math.ceil(margin * far * impostors) + extra)


def _descending(scores: np.ndarray, subjects: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    keep = min(keep, len(scores))
    if keep < len(scores):
        top = np.argpartition(-scores, keep - 1)[:keep]
        scores, subjects = scores[top], subjects[top]
    order = np.argsort(-scores, kind="stable")
    return scores[order], subjects[order]


def pair_trials(
    scores: np.ndarray,
    same: np.ndarray,
    far: float,
    left_subject: np.ndarray | None = None,
    right_subject: np.ndarray | None = None,
) -> Trials:
    """Trials of a pairs list. With the subject (any label) of both sides of every pair, the
    bootstrap resamples subjects; it falls back to pairs when the labels cannot be identities
    (an impostor pair of one subject, or a mated pair of two)."""
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise DataError("calibration needs both mated and impostor pairs")
    pool, note, codes, count = None, "the subjects of the pairs are not known", np.zeros((len(same), 2), int), 0
    if left_subject is not None and right_subject is not None:
        names, flat = np.unique(np.r_[np.asarray(left_subject), np.asarray(right_subject)], return_inverse=True)
        codes, count = flat.reshape(2, -1).T, len(names)
        if (codes[~same, 0] == codes[~same, 1]).any() or (codes[same, 0] != codes[same, 1]).any():
            note = "the subject labels contradict the pairs' labels (an impostor pair of one subject or the reverse)"
        else:
            ordered = np.sort(codes[~same], axis=1)
            distinct, counts = np.unique(ordered, axis=0, return_counts=True)
            pool, note = ListedPairs(distinct, counts), ""
    impostors = int((~same).sum())
    impostor, impostor_subjects = _descending(scores[~same], codes[~same], tail_size(impostors, far))
    return Trials(
        scores[same], codes[same, 0], impostor, impostor_subjects, impostors, pool, count, scores[~same], note
    )


def tree_trials(
    emb: np.ndarray,
    identities: np.ndarray,
    far: float,
    rows_per_block: int | None = None,
    sample_size: int = 100_000,
    seed: int = 0,
    progress: bool = False,
) -> Trials:
    """Trials of an identity tree: every unordered pair of its images, mated when both show the
    same identity, scored by blocks of rows (matrix products) keeping only the highest impostor
    scores. `emb`: L2-normalized embeddings, one row per image."""
    emb = np.asarray(emb, dtype=np.float32)
    names, codes = np.unique(np.asarray(identities), return_inverse=True)
    if len(names) < 2:
        raise DataError("calibration on an identity tree needs at least two identities")
    sizes = np.bincount(codes)
    n = len(emb)
    impostors = int((n * n - (sizes.astype(np.int64) ** 2).sum()) // 2)
    keep = tail_size(impostors, far)
    rng = np.random.default_rng(seed)
    rows_per_block = rows_per_block or max(1, 4_000_000 // n)  # ~4M scores per block
    genuine, genuine_subject, sample = [], [], []
    top, top_subjects = np.zeros(0), np.zeros((0, 2), dtype=np.int64)
    starts = range(0, n, rows_per_block)
    for start in tqdm(starts, desc="scoring pairs", unit="block", disable=not progress):
        stop = min(start + rows_per_block, n)
        # columns start.. only: each unordered pair once, in the block of its first image
        block = emb[start:stop] @ emb[start:].T
        r, c = np.nonzero(np.arange(start, n)[None, :] > np.arange(start, stop)[:, None])
        values, a, b = block[r, c].astype(np.float64), codes[r + start], codes[c + start]
        mated = a == b
        genuine.append(values[mated])
        genuine_subject.append(a[mated])
        values, a, b = values[~mated], a[~mated], b[~mated]
        sample.append(values[rng.random(len(values)) < sample_size / max(impostors, 1)])
        cut = top[-1] if len(top) >= keep else -np.inf  # a block's score below it cannot be kept
        high = values >= cut
        top, top_subjects = _descending(
            np.r_[top, values[high]], np.r_[top_subjects, np.stack([a[high], b[high]], 1)], keep
        )
    return Trials(
        np.concatenate(genuine),
        np.concatenate(genuine_subject),
        top,
        top_subjects,
        impostors,
        CrossPairs(sizes),
        len(names),
        np.concatenate(sample),
    )


# ---- the threshold and its error rates ------------------------------------------------------
def threshold_at_far(impostor_desc: np.ndarray, impostors: int, far: float) -> float | None:
    """The smallest impostor score s with FMR(s) = #{impostor >= s} / impostors <= far, from the
    highest impostor scores in descending order (at least the k + 1 highest, k = floor(far *
    impostors)); None when no impostor score reaches the target (fewer than 1/far impostors, or
    a tie at the highest scores)."""
    k = math.floor(far * impostors * (1 + 1e-12))  # 1e-3 * 1000 must give 1, not 0.999...
    if k < 1:
        return None
    if k >= impostors:
        return float(impostor_desc[impostors - 1]) if len(impostor_desc) >= impostors else None
    if len(impostor_desc) <= k:
        raise ValueError(f"the {k + 1} highest impostor scores are needed, {len(impostor_desc)} kept")
    below = impostor_desc[k]  # the (k+1)-th highest: accepting it would make k + 1 false matches
    above = int(np.searchsorted(-impostor_desc, -below, side="left"))  # scores strictly above it
    return float(impostor_desc[above - 1]) if above else None


def fmr_at(trials: Trials, threshold: float) -> float:
    if len(trials.impostor) < trials.impostor_count and threshold < trials.impostor[-1]:
        raise ValueError("threshold below the kept impostor scores")
    return float((trials.impostor >= threshold).sum() / trials.impostor_count)


def fnmr_at(trials: Trials, threshold: float) -> float:
    return float((trials.genuine < threshold).mean()) if len(trials.genuine) else float("nan")


def subject_fnmr(trials: Trials, threshold: float) -> tuple[float, float]:
    """(largest subject's share of the mated pairs, mean over subjects of each one's FNMR)."""
    mated = np.bincount(trials.genuine_subject, minlength=trials.subjects)
    fails = np.bincount(trials.genuine_subject, trials.genuine < threshold, minlength=trials.subjects)
    has = mated > 0
    return float(mated.max() / mated.sum()), float((fails[has] / mated[has]).mean())


# ---- the bootstrap --------------------------------------------------------------------------
@dataclass
class Resamples:
    fmr: np.ndarray  # FMR of the calibrated threshold in each resample
    fnmr: np.ndarray
    threshold: np.ndarray  # the threshold recalibrated on each resample (nan: none)
    curve: np.ndarray  # (resamples, grid): FMR at each grid threshold
    beyond_tail: int  # resamples whose threshold lay below the kept impostor scores


def _weights(
    trials: Trials, rejected: np.ndarray, rng: np.random.Generator, b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per resample: the weight of each kept impostor score (b, tail), the resampled impostor
    count (b,), and the resampled counts of rejected and of all mated pairs (b,)."""
    if trials.pool is None:  # Poisson bootstrap of pairs: a sum of k Poisson(1) weights is Poisson(k)
        tail = rng.poisson(1.0, (b, len(trials.impostor))).astype(np.float64)
        rest = rng.poisson(trials.impostor_count - len(trials.impostor), b)
        fails = rng.poisson(rejected.sum(), b).astype(np.float64)
        return tail, tail.sum(1) + rest, fails, fails + rng.poisson((~rejected).sum(), b)
    s = trials.subjects
    draws = rng.integers(0, s, (b, s)) + (np.arange(b) * s)[:, None]
    w = np.bincount(draws.ravel(), minlength=b * s).reshape(b, s).astype(np.float64)
    pairs, subject = trials.impostor_subjects, trials.genuine_subject
    fails, mated = np.bincount(subject, rejected, minlength=s), np.bincount(subject, minlength=s)
    return w[:, pairs[:, 0]] * w[:, pairs[:, 1]], trials.pool.total(w), w @ fails, w @ mated


def _resample_thresholds(trials: Trials, tail_w: np.ndarray, totals: np.ndarray, far: float) -> np.ndarray:
    """Per resample, the smallest impostor score drawn (weight > 0) whose weighted count of
    scores at or above it is <= far * total (ties between scores are not merged here)."""
    cum = np.cumsum(tail_w, axis=1)
    ok = (cum <= far * totals[:, None]) & (tail_w > 0)
    last = np.where(ok.any(1), ok.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1), -1)
    out = np.where(last >= 0, trials.impostor[np.maximum(last, 0)], np.nan)
    exhausted = len(trials.impostor) < trials.impostor_count
    if exhausted:  # the resample's threshold may lie below the kept scores: unknown
        out[cum[:, -1] <= far * totals] = -np.inf
    return out


def bootstrap(
    trials: Trials,
    far: float,
    threshold: float,
    grid: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    chunk: int = 50,
    progress: bool = False,
) -> Resamples:
    """`n_boot` resamples (see the module docstring) of the FMR and FNMR at `threshold`, the
    threshold recalibrated on each, and the FMR at each `grid` threshold."""
    rng = np.random.default_rng(seed)
    accepted = trials.impostor >= threshold
    rejected = trials.genuine < threshold
    positions = (trials.impostor[None, :] >= grid[:, None]).sum(1)  # impostors at or above each grid point
    fmr, fnmr, thresholds, curves = [], [], [], []
    for start in tqdm(range(0, n_boot, chunk), desc="bootstrap", unit="chunk", disable=not progress):
        tail_w, totals, fails, mated = _weights(trials, rejected, rng, min(chunk, n_boot - start))
        totals = np.maximum(totals, 1e-300)
        fmr.append(tail_w @ accepted / totals)
        fnmr.append(np.where(mated > 0, fails / np.maximum(mated, 1e-300), np.nan))
        thresholds.append(_resample_thresholds(trials, tail_w, totals, far))
        cum = np.c_[np.zeros(len(tail_w)), np.cumsum(tail_w, axis=1)]
        curves.append(cum[:, positions] / totals[:, None])
    t = np.concatenate(thresholds)
    beyond = int(np.isneginf(t).sum())
    return Resamples(
        np.concatenate(fmr), np.concatenate(fnmr), np.where(np.isneginf(t), np.nan, t), np.concatenate(curves), beyond
    )


def percentile_interval(values: np.ndarray, level: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


# ---- the calibration -------------------------------------------------------------------------
@dataclass
class Calibration:
    """A calibrated threshold with its achieved error rates and their bootstrap intervals."""

    far: float
    threshold: float | None  # None: too few impostor pairs (see `reason`)
    impostor_pairs: int
    mated_pairs: int
    subjects: int
    reason: str = ""  # why there is no threshold
    warning: str = ""  # why the threshold is imprecise
    false_matches: int = 0
    fmr: float | None = None  # achieved on the data (<= far)
    fnmr: float | None = None
    fmr_ci: list[float] | None = None
    fnmr_ci: list[float] | None = None
    threshold_ci: list[float] | None = None
    level: float = 0.95
    resamples: int = 0
    bootstrap_unit: str = ""  # 'subjects' or 'pairs', with the reason for pairs
    resamples_beyond_tail: int = 0
    # the FNMR counts pairs, so a person with many images weighs quadratically: the share of the
    # mated pairs of the largest subject, and the FNMR averaged over subjects (each counts once)
    largest_subject_mated_share: float | None = None
    fnmr_subject_mean: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def too_few_reason(impostors: int, far: float) -> str:
    return (
        f"too few impostor pairs ({impostors} < 1/FAR = {math.ceil(1 / far)}) for FAR {far:g}: every impostor "
        "score is accepted more often than that, so the threshold lies above all of them, by an unknown margin"
    )


def imprecision_warning(impostors: int, far: float) -> str:
    expected = far * impostors
    if expected >= RULE_OF_30:
        return ""
    return (
        f"only {expected:.0f} false matches expected at FAR {far:g} ({impostors} impostor pairs < "
        f"{RULE_OF_30}/FAR = {math.ceil(RULE_OF_30 / far)}): the FMR is known to worse than +-30%"
    )


def calibrate(
    trials: Trials,
    far: float,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Calibration, Resamples | None]:
    """The threshold for `far` on `trials`, its achieved FMR and FNMR and bootstrap intervals."""
    if not 0 < far < 1:
        raise DataError(f"the target FAR must lie between 0 and 1, got {far:g}")
    unit = "subjects" if trials.by_subject else f"pairs ({trials.unit_note})"
    base = Calibration(far, None, trials.impostor_count, len(trials.genuine), trials.subjects, level=level)
    base.bootstrap_unit = unit
    threshold = threshold_at_far(trials.impostor, trials.impostor_count, far)
    if threshold is None:
        base.reason = (
            too_few_reason(trials.impostor_count, far)
            if far * trials.impostor_count < 1
            else ("the highest impostor scores are tied: no impostor score reaches the target FAR")
        )
        return base, None
    grid = fmr_grid(trials, threshold)
    boot = bootstrap(trials, far, threshold, grid, n_boot, seed, progress=progress) if n_boot else None
    base.threshold, base.false_matches = threshold, int((trials.impostor >= threshold).sum())
    base.fmr, base.fnmr = fmr_at(trials, threshold), fnmr_at(trials, threshold)
    if trials.by_subject and len(trials.genuine):
        base.largest_subject_mated_share, base.fnmr_subject_mean = subject_fnmr(trials, threshold)
    base.warning = imprecision_warning(trials.impostor_count, far)
    if boot is not None:
        base.fmr_ci, base.fnmr_ci = percentile_interval(boot.fmr, level), percentile_interval(boot.fnmr, level)
        base.threshold_ci = None if boot.beyond_tail else percentile_interval(boot.threshold, level)
        base.resamples, base.resamples_beyond_tail = n_boot, boot.beyond_tail
    return base, boot


def fmr_grid(trials: Trials, threshold: float, points: int = 60) -> np.ndarray:
    """Thresholds over the kept impostor scores around `threshold`, for the FMR curve."""
    low = trials.impostor[min(len(trials.impostor) - 1, 4 * max(1, int((trials.impostor >= threshold).sum())))]
    high = trials.impostor[0]
    return np.linspace(min(low, threshold), max(high, threshold), points)
