"""Moving a gallery to a new model without its images: a ridge map old -> new fitted on a
calibration set of faces embedded by both models, and what it costs.

The map is the ridge regression of linear_map.py (same-image pairs, no intercept), its lambda
chosen by k-fold cross-validation on the calibration faces; its measured loss is one minus the
mean cosine of held-out mapped embeddings and their true new-model embeddings. The table compares,
for new-model probes, a gallery whose vectors were mapped with one whose people were enrolled
again with the new model (TAR@FAR over probe x enrolled-identity scores, and rank-1), by
calibration size. Read from the other side, the same numbers are the mapping attack: stolen
vectors of one model made usable in the attacker's model with N pairs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facerec.analysis.common import normalize
from facerec.analysis.linear_map import LAMBDAS, ridge_path
from facerec.errors import DataError
from facerec.eval.identification import gallery_probe_split, identity_scores, mated_ranks
from facerec.eval.metrics import roc_curve, tar_at_fars

FARS = (1e-2, 1e-3, 1e-4)
MIN_CALIBRATION = 10  # fewer faces cannot hold out anything for the loss


@dataclass
class FittedMap:
    """A map old -> new (apply: normalize(old @ matrix)) and how well it did on faces it was not
    fitted on."""

    matrix: np.ndarray  # (old dimension, new dimension), float64
    lam: float
    calibration: int  # faces it was fitted on
    held_out_cosine: float  # mean cosine, mapped vs true new embedding, k-fold held out
    loss: float  # 1 - held_out_cosine

    def record(self) -> dict[str, Any]:
        """What a migrated gallery keeps of the map (not the matrix)."""
        return {k: v for k, v in asdict(self).items() if k != "matrix"}

    def apply(self, old: np.ndarray) -> np.ndarray:
        return normalize(np.asarray(old, np.float64) @ self.matrix).astype(np.float32)


def check_calibration(old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    old, new = np.asarray(old, np.float64), np.asarray(new, np.float64)
    if old.ndim != 2 or new.ndim != 2 or len(old) != len(new):
        raise DataError(
            f"calibration: one old and one new embedding per face, got arrays of shape {old.shape} and {new.shape}"
        )
    if len(old) < MIN_CALIBRATION:
        raise DataError(
            f"calibration: {len(old)} faces are too few to fit and measure a map (at least {MIN_CALIBRATION})"
        )
    if not (np.isfinite(old).all() and np.isfinite(new).all()):
        raise DataError("calibration: embeddings with NaN or infinite values")
    return normalize(old), normalize(new)


def fit_map(
    old: np.ndarray, new: np.ndarray, lambdas: tuple[float, ...] = LAMBDAS, folds: int = 5, seed: int = 0
) -> FittedMap:
    """The ridge map from old to new embeddings of the same faces: lambda by `folds`-fold
    cross-validation (highest held-out mean cosine), then fitted on every face."""
    old, new = check_calibration(old, new)
    fold = np.random.default_rng(seed).permutation(len(old)) % min(folds, len(old))
    held = np.zeros((len(lambdas), len(old)))
    for k in np.unique(fold):
        train, test = fold != k, fold == k
        for j, m in enumerate(ridge_path(old[train], new[train], lambdas)):
            held[j, test] = (normalize(old[test] @ m) * new[test]).sum(1)
    per_lambda = held.mean(1)
    best = int(np.argmax(per_lambda))
    matrix = ridge_path(old, new, [lambdas[best]])[0]
    cosine = float(per_lambda[best])
    return FittedMap(matrix, float(lambdas[best]), len(old), cosine, 1.0 - cosine)


# ---- the migration table ---------------------------------------------------------------------
def gallery_metrics(
    gallery: np.ndarray, gallery_ids: np.ndarray, probes: np.ndarray, probe_ids: np.ndarray, fars=FARS
) -> dict[str, Any]:
    """Probes against a gallery (score per enrolled identity: its best face): rank-1 of the
    probes, and TAR at FAR over every probe x identity score (mated: the probe's own identity)."""
    scores, ids = identity_scores(normalize(probes), normalize(gallery), gallery_ids)
    ranks = mated_ranks(scores, ids, probe_ids)
    same = ids[None, :] == probe_ids[:, None]
    roc = roc_curve(scores.ravel(), same.ravel())
    return {"rank1": float((ranks == 1).mean()), "tar_at_far": tar_at_fars(roc, fars)}


@dataclass
class Split:
    calibration_pool: np.ndarray  # image indices the calibration sets are drawn from
    gallery: np.ndarray  # enrolled images (one per evaluation identity)
    probes: np.ndarray  # other images of enrolled identities


def split(identities: np.ndarray, calibration_identities: np.ndarray, seed: int = 0) -> Split:
    """Calibration images: those of `calibration_identities`; of the other identities one image
    each is enrolled and the rest are probes (identities disjoint from the calibration's)."""
    identities = np.asarray(identities)
    is_calibration = np.isin(identities, calibration_identities)
    rest = np.flatnonzero(~is_calibration)
    if not len(rest) or not is_calibration.any():
        raise DataError("the calibration identities must be some, but not all, of the identities")
    parts = gallery_probe_split(identities[rest], seed=seed)
    return Split(np.flatnonzero(is_calibration), rest[parts.gallery], rest[parts.mated])


def migration_table(
    old: np.ndarray,
    new: np.ndarray,
    identities: np.ndarray,
    parts: Split,
    sizes: tuple[int, ...] = (100, 500, 2000),
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """New-model probes against the gallery enrolled again with the new model, against the old
    gallery with old-model probes (before the move), and against the mapped gallery for each
    calibration size (`repeats` random calibration sets each: mean and spread)."""
    if np.intersect1d(identities[parts.calibration_pool], identities[np.r_[parts.gallery, parts.probes]]).size:
        raise DataError("calibration identities overlap the gallery's or the probes'")
    g_ids, p_ids = identities[parts.gallery], identities[parts.probes]
    report: dict[str, Any] = {
        "gallery_faces": len(parts.gallery),
        "probes": len(parts.probes),
        "calibration_pool": len(parts.calibration_pool),
        "re_enrolled": gallery_metrics(new[parts.gallery], g_ids, new[parts.probes], p_ids),
        "old_model": gallery_metrics(old[parts.gallery], g_ids, old[parts.probes], p_ids),
        "chance_rank1": 1.0 / len(np.unique(g_ids)),
        "mapped": [],
    }
    rng = np.random.default_rng(seed)
    for size in sizes:
        if size > len(parts.calibration_pool):
            report["mapped"].append({"calibration": size, "skipped": f"pool has {len(parts.calibration_pool)}"})
            continue
        runs = []
        for _ in range(repeats):
            chosen = rng.choice(parts.calibration_pool, size, replace=False)
            fitted = fit_map(old[chosen], new[chosen], seed=int(rng.integers(1 << 31)))
            metrics = gallery_metrics(fitted.apply(old[parts.gallery]), g_ids, new[parts.probes], p_ids)
            runs.append({**fitted.record(), **metrics})
        report["mapped"].append(summarize(size, runs))
    return report


def summarize(size: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over repeated calibration draws of every number of a run."""

    def stats(values: list[Any]) -> dict[str, float] | str:
        if not all(isinstance(v, float | int) for v in values):
            return values[0]  # 'not measurable: ...' is the same text in every run
        return {"mean": float(np.mean(values)), "std": float(np.std(values))}

    fars = runs[0]["tar_at_far"].keys()
    return {
        "calibration": size,
        "repeats": len(runs),
        "rank1": stats([r["rank1"] for r in runs]),
        "tar_at_far": {far: stats([r["tar_at_far"][far] for r in runs]) for far in fars},
        "lambda": [r["lam"] for r in runs],
        "loss": stats([r["loss"] for r in runs]),
    }


def plot(reports: dict[str, dict[str, Any]], path: Path) -> None:
    """Rank-1 and TAR at the middle FAR against calibration size, one line per direction, with
    the re-enrolled gallery as the ceiling."""
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    far = f"{FARS[1]:g}"
    for (title, report), color in zip(reports.items(), ("C0", "C1", "C2", "C3"), strict=False):
        rows = [r for r in report["mapped"] if "rank1" in r]
        sizes = [r["calibration"] for r in rows]
        for ax, key, ceiling in (
            (axes[0], lambda r: r["rank1"], report["re_enrolled"]["rank1"]),
            (axes[1], lambda r: r["tar_at_far"][far], report["re_enrolled"]["tar_at_far"][far]),
        ):
            values = [key(r) for r in rows]
            ax.errorbar(
                sizes, [v["mean"] for v in values], [v["std"] for v in values], marker="o", color=color, label=title
            )
            ax.axhline(ceiling, color=color, ls="--", lw=0.8, label=f"{title}: re-enrolled")
    for ax, label in ((axes[0], "rank-1"), (axes[1], f"TAR at FAR {far}")):
        ax.set_xscale("log")
        ax.set_xlabel("calibration faces (embedded by both models)")
        ax.set_ylabel(f"{label}, new probes vs migrated gallery")
        ax.legend(fontsize=7)
    save_figure(fig, path, dpi=100)


def linking_auc(vectors: np.ndarray, identities: np.ndarray, non_mated: int = 200_000, seed: int = 0) -> float:
    """How well cosine similarity of `vectors` tells two rows of one identity from two of
    different ones (AUC over every mated row pair and `non_mated` random non-mated ones): about
    0.5 means the rows cannot be linked to each other."""
    from facerec.analysis.membership import auc

    x, identities = normalize(np.asarray(vectors, np.float64)), np.asarray(identities)
    mated = [(a, b) for name in np.unique(identities) for a, b in _pairs_within(np.flatnonzero(identities == name))]
    rng = np.random.default_rng(seed)
    left, right = rng.integers(len(x), size=(2, 2 * non_mated))
    keep = identities[left] != identities[right]
    left, right = left[keep][:non_mated], right[keep][:non_mated]
    if not mated or not len(left):
        raise DataError("linking needs both pairs of one identity and pairs of different ones")
    m = np.array(mated)
    return auc((x[m[:, 0]] * x[m[:, 1]]).sum(1), (x[left] * x[right]).sum(1))


def _pairs_within(rows: np.ndarray) -> list[tuple[int, int]]:
    return [(int(rows[i]), int(rows[j])) for i in range(len(rows)) for j in range(i + 1, len(rows))]
