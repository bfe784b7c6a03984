"""Privacy leakage of embeddings: was this person in the model's training set?

A baseline membership-inference attack that needs nothing but embeddings: a network pulls the
images of its training identities together (the loss it minimized asks for exactly that), so a
member identity's images tend to sit closer to each other than a non-member's. The attack
score of an identity is its intra-identity compactness, the mean cosine similarity over pairs
of its images; the report gives the AUC of that score for members against non-members with a
bootstrap interval (identities resampled within each class).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facerec.errors import DataError
from facerec.eval.metrics import auc as roc_auc
from facerec.eval.metrics import roc_curve


def compactness(emb: np.ndarray, identities: np.ndarray) -> dict[str, float]:
    """Mean pairwise cosine similarity of each identity with at least two images."""
    out = {}
    for name in np.unique(identities):
        e = emb[identities == name].astype(np.float64)
        n = len(e)
        if n >= 2:
            total = e.sum(0)
            out[str(name)] = float((total @ total - (e * e).sum()) / (n * (n - 1)))
    return out


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > a random negative), ties counting one half: the area under
    the ROC of `facerec.eval.metrics`, whose points are the distinct scores."""
    scores = np.concatenate([positive, negative])
    is_positive = np.r_[np.ones(len(positive), bool), np.zeros(len(negative), bool)]
    return roc_auc(roc_curve(scores, is_positive))


def bootstrap_auc(
    positive: np.ndarray, negative: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, list[float]]:
    rng = np.random.default_rng(seed)
    values = [auc(rng.choice(positive, len(positive)), rng.choice(negative, len(negative))) for _ in range(n_boot)]
    q = (1 - level) / 2
    return auc(positive, negative), [float(np.quantile(values, q)), float(np.quantile(values, 1 - q))]


def attack(
    emb: np.ndarray, identities: np.ndarray, members: set[str], n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    return attack_on_scores(compactness(emb, identities), members, n_boot, seed)


# The black-box attacker (FaceLeaks' open question): no embeddings, only the similarity score of
# each pair of images he submits. The same compactness, estimated from the pairs he can afford.
PairScores = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (left, right image indices) -> scores


def scores_only_compactness(
    query: PairScores, identities: np.ndarray, pairs_per_identity: int | None = None, seed: int = 0
) -> dict[str, float]:
    """Each identity's mean score over `pairs_per_identity` random pairs of its images (None:
    every pair), asked through `query`, which is all the attacker sees."""
    rng = np.random.default_rng(seed)
    identities = np.asarray(identities)
    out = {}
    for name in np.unique(identities):
        rows = np.flatnonzero(identities == name)
        left, right = np.triu_indices(len(rows), 1)
        if not len(left):
            continue
        if pairs_per_identity is not None and pairs_per_identity < len(left):
            chosen = rng.choice(len(left), pairs_per_identity, replace=False)
            left, right = left[chosen], right[chosen]
        out[str(name)] = float(np.mean(query(rows[left], rows[right])))
    return out


def scores_only_attack(
    query: PairScores,
    identities: np.ndarray,
    members: set[str],
    pairs_per_identity: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    scores = scores_only_compactness(query, identities, pairs_per_identity, seed)
    return {**attack_on_scores(scores, members, n_boot, seed), "pairs_per_identity": pairs_per_identity}


def attack_on_scores(scores: dict[str, float], members: set[str], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """AUC (bootstrap interval) of identity scores for members against non-members."""
    pos = np.array([v for k, v in scores.items() if k in members])
    neg = np.array([v for k, v in scores.items() if k not in members])
    if len(pos) < 2 or len(neg) < 2:
        raise DataError(
            f"membership needs identities with two images on both sides: {len(pos)} members, {len(neg)} non-members"
        )
    value, ci = bootstrap_auc(pos, neg, n_boot, seed)
    return {
        "members": len(pos),
        "non_members": len(neg),
        "auc": value,
        "auc_ci": ci,
        "member_compactness_mean": float(pos.mean()),
        "non_member_compactness_mean": float(neg.mean()),
        "scores": {"members": pos.tolist(), "non_members": neg.tolist()},
    }


def plot(results: dict[str, dict[str, Any]], path: Path, title: str = "") -> None:
    """Histograms of the compactness of members and non-members, one panel per model."""
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.3), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items(), strict=True):
        lo = min(min(r["scores"]["members"]), min(r["scores"]["non_members"]))
        bins = np.linspace(lo, 1, 40)
        ax.hist(r["scores"]["members"], bins=bins, alpha=0.6, density=True, label=f"members ({r['members']})")
        ax.hist(
            r["scores"]["non_members"], bins=bins, alpha=0.6, density=True, label=f"non-members ({r['non_members']})"
        )
        ax.set_title(f"{name}: AUC {r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]", fontsize=8)
        ax.set_xlabel("intra-identity compactness (mean cosine)")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=100)
