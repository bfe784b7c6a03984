"""Are two models' embedding spaces linearly equivalent? ("Common CNN-based face embedding spaces
are (almost) equivalent", McNeely-White et al., as reviewed in the seeds.)

Fit M minimizing sum_j ||M a_j - b_j||^2 + lambda ||M||_F^2 (closed form, embedding sizes may
differ) from model A's embeddings to model B's, with training pairs either of the *same image*
(a = f_A(x), b = f_B(x)) or of *the same identity* (a = f_A(x), b = f_B(y), y another image of
x's identity, as in the paper). Then verify pairs where one side is mapped A -> B and compare
with B alone, as a function of lambda and of the number of training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facerec.analysis.common import normalize
from facerec.errors import DataError
from facerec.eval.metrics import roc_curve, tar_at_fars
from facerec.eval.pairs import Pairs
from facerec.eval.verification import kfold_accuracy

VARIANTS = ("same-image", "same-identity")
LAMBDAS = tuple(10.0**k for k in range(-4, 4))


def ridge_path(x: np.ndarray, y: np.ndarray, lambdas: tuple[float, ...] | list[float]) -> list[np.ndarray]:
    """argmin_M ||X M - Y||^2 + lambda ||M||^2 for every lambda, M of shape (d_a, d_b): from one
    SVD X = U S V^T, M = V diag(s / (s^2 + lambda)) U^T Y."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    uty = u.T @ y
    return [vt.T @ ((s / (s**2 + lam))[:, None] * uty) for lam in lambdas]


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """The same by the normal equations (X^T X + lambda I) M = X^T Y, for reference."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)


def training_pairs(
    identities: np.ndarray, images: np.ndarray, variant: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) image indices among `images` for a variant: each image with itself, or
    each image with another random image of its identity (images alone in their identity drop)."""
    if variant == "same-image":
        return images, images
    if variant != "same-identity":
        raise ValueError(f"unknown variant '{variant}': use one of {VARIANTS}")
    src, dst = [], []
    for i in images:
        others = images[(identities[images] == identities[i]) & (images != i)]
        if len(others):
            src.append(i)
            dst.append(rng.choice(others))
    return np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64)


def draw_images(identities: np.ndarray, pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` images of `pool`, taking whole identities in random order (so that the
    same-identity variant has pairs), the last identity cut to fit."""
    names = np.unique(identities[pool])
    chosen: list[int] = []
    for name in rng.permutation(names):
        chosen.extend(pool[identities[pool] == name].tolist())
        if len(chosen) >= count:
            break
    if len(chosen) < count:
        raise DataError(f"asked for {count} training images, the pool holds {len(pool)}")
    return np.array(chosen[:count])


def mean_cosine(mapped: np.ndarray, target: np.ndarray) -> float:
    return float((normalize(mapped) * normalize(target)).sum(1).mean())


@dataclass
class Verification:
    accuracy: float
    std: float
    tar: dict[str, float | str]

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "std": self.std, "tar_at_far": self.tar}


def verification(scores: np.ndarray, pairs: Pairs, fars: tuple[float, ...] = (1e-2, 1e-3)) -> Verification:
    k = kfold_accuracy(scores, pairs.same, pairs.fold)
    return Verification(k.accuracy, k.std, tar_at_fars(roc_curve(scores, pairs.same), fars))


def mapped_scores(a: np.ndarray, b: np.ndarray, m: np.ndarray, pairs: Pairs) -> np.ndarray:
    """Left image in A's space mapped to B, right image in B's space."""
    return pairs.scores(normalize(a @ m), b)


def experiment(
    a: np.ndarray,
    b: np.ndarray,
    identities: np.ndarray,
    pool: np.ndarray,
    pairs: Pairs,
    sizes: tuple[int, ...] = (100, 500, 2000),
    lambdas: tuple[float, ...] = LAMBDAS,
    variants: tuple[str, ...] = VARIANTS,
    validation: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """For each variant and training size N: lambda chosen on a held-out 20% of the N images
    (mean cosine between mapped and target), then verification of `pairs` with the left side
    mapped, against B alone; plus the whole lambda sweep on the pairs (for the curves)."""
    if np.isin(pairs.left, pool).any() or np.isin(pairs.right, pool).any():
        raise DataError("the training pool shares images with the evaluation pairs")
    rng = np.random.default_rng(seed)
    base_b = verification(pairs.scores(b, b), pairs)
    report: dict[str, Any] = {
        "pairs": len(pairs.same),
        "pool_images": len(pool),
        "lambdas": list(lambdas),
        "b_alone": base_b.as_dict(),
        "results": [],
    }
    if a.shape[1] == b.shape[1]:
        report["a_alone"] = verification(pairs.scores(a, a), pairs).as_dict()
    for variant in variants:
        for size in sizes:
            if size > len(pool):
                report["results"].append({"variant": variant, "images": size, "skipped": f"pool has {len(pool)}"})
                continue
            chosen = draw_images(identities, pool, size, rng)
            held = rng.random(len(chosen)) < validation
            fit_src, fit_dst = training_pairs(identities, chosen[~held], variant, rng)
            val_src, val_dst = training_pairs(identities, chosen[held], variant, rng)
            if len(fit_src) == 0:
                report["results"].append({"variant": variant, "images": size, "skipped": "no training pairs"})
                continue
            maps = ridge_path(a[fit_src], b[fit_dst], lambdas)
            val = [mean_cosine(a[val_src] @ m, b[val_dst]) if len(val_src) else float("nan") for m in maps]
            best = int(np.nanargmax(val)) if np.isfinite(val).any() else len(lambdas) // 2
            final = ridge_path(a[np.r_[fit_src, val_src]], b[np.r_[fit_dst, val_dst]], [lambdas[best]])[0]
            sweep = [verification(mapped_scores(a, b, m, pairs), pairs) for m in maps]
            chosen_result = verification(mapped_scores(a, b, final, pairs), pairs)
            report["results"].append(
                {
                    "variant": variant,
                    "images": size,
                    "training_pairs": int(len(fit_src) + len(val_src)),
                    "lambda": lambdas[best],
                    "validation_mean_cosine": val,
                    **chosen_result.as_dict(),
                    "accuracy_drop": base_b.accuracy - chosen_result.accuracy,
                    "sweep_accuracy": [v.accuracy for v in sweep],
                    "sweep_tar_at_1e-3": [v.tar["0.001"] for v in sweep],
                }
            )
    return report


def plot(report: dict[str, Any], path: Path, title: str = "") -> None:
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    lambdas = report["lambdas"]
    for r in report["results"]:
        if "sweep_accuracy" not in r:
            continue
        style = "-" if r["variant"] == "same-image" else "--"
        axes[0].semilogx(
            lambdas, r["sweep_accuracy"], style, marker="o", ms=3, label=f"{r['variant']}, N={r['images']}"
        )
        axes[0].plot(r["lambda"], r["accuracy"], "k*", ms=7)
    axes[0].axhline(report["b_alone"]["accuracy"], color="k", lw=0.8, label="B alone")
    if "a_alone" in report:
        axes[0].axhline(report["a_alone"]["accuracy"], color="gray", lw=0.8, ls=":", label="A alone")
    axes[0].set_xlabel("lambda")
    axes[0].set_ylabel("verification accuracy, left side mapped A->B")
    axes[0].legend(fontsize=6)
    axes[0].set_title(f"{title} accuracy vs lambda (* = lambda chosen on held-out images)".strip(), fontsize=8)
    for variant in VARIANTS:
        rows = [r for r in report["results"] if r["variant"] == variant and "accuracy" in r]
        if rows:
            axes[1].plot(
                [r["images"] for r in rows], [100 * r["accuracy_drop"] for r in rows], marker="o", label=variant
            )
    axes[1].set_xscale("log")
    axes[1].set_xlabel("training images N")
    axes[1].set_ylabel("accuracy drop vs B alone (points)")
    axes[1].legend(fontsize=7)
    save_figure(fig, path, dpi=100)


def mapping_attack(
    a: np.ndarray,
    b: np.ndarray,
    identities: np.ndarray,
    pool: np.ndarray,
    targets: np.ndarray,
    sizes: tuple[int, ...] = (10, 50, 100, 500, 2000),
    lam: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """An attacker holds N (image, A-embedding, B-embedding) triples from `pool` and leaked
    A-embeddings of other people (`targets`). Mapping the leaked embeddings into B's space, how
    often do they land nearest to the right person in a B gallery (one image per identity,
    different from the probe)? Rank-1 against chance, per N; lambda chosen as in `experiment`
    when not given."""
    rng = np.random.default_rng(seed)
    names = identities[targets]
    multi = [n for n in np.unique(names) if (names == n).sum() >= 2]
    if len(multi) < 2:
        raise DataError("the mapping attack needs target identities with two images")
    gallery, probes = [], []
    for n in multi:
        idx = targets[names == n]
        gallery.append(idx[0])
        probes.extend(idx[1:].tolist())
    gallery, probes = np.array(gallery), np.array(probes)
    truth = np.searchsorted(np.array(multi), identities[probes])
    gallery_b = normalize(b[gallery])

    def rank1(m: np.ndarray) -> float:
        sims = normalize(a[probes] @ m) @ gallery_b.T
        return float((sims.argmax(1) == truth).mean())

    rows = []
    for size in sizes:
        if size > len(pool):
            continue
        chosen = rng.choice(pool, size, replace=False)
        if lam is None:
            held = rng.random(size) < 0.2
            maps = ridge_path(a[chosen[~held]], b[chosen[~held]], LAMBDAS)
            val = [mean_cosine(a[chosen[held]] @ m, b[chosen[held]]) for m in maps] if held.any() else [0.0]
            best = LAMBDAS[int(np.argmax(val))] if held.any() else 1.0
        else:
            best = lam
        m = ridge_path(a[chosen], b[chosen], [best])[0]
        rows.append({"pairs": size, "lambda": best, "rank1": rank1(m)})
    same_model = b[probes] @ gallery_b.T
    return {
        "gallery_identities": len(gallery),
        "probes": len(probes),
        "chance_rank1": 1.0 / len(gallery),
        "b_to_b_rank1": float((same_model.argmax(1) == truth).mean()),
        "results": rows,
    }
