"""1:N identification: closed-set rank-k / CMC and open-set FNIR at FPIR (NIST FRVT style)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facerec.eval.metrics import not_measurable


@dataclass
class GalleryProbeSplit:
    gallery: np.ndarray  # image indices enrolled
    mated: np.ndarray  # probe images whose identity is enrolled
    non_mated: np.ndarray  # probe images of identities never enrolled


def gallery_probe_split(
    labels: np.ndarray, seed: int = 0, gallery_per_identity: int = 1, unenrolled_fraction: float = 0.0
) -> GalleryProbeSplit:
    """Per identity with more than `gallery_per_identity` images: that many to the gallery,
    the rest are mated probes. A fraction of identities is left out of the gallery entirely:
    all their images become non-mated probes (open set). Deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    ids = np.unique(labels)
    rng.shuffle(ids)
    n_out = round(unenrolled_fraction * len(ids))
    gallery, mated, non_mated = [], [], []
    for k, ident in enumerate(ids):
        images = rng.permutation(np.flatnonzero(labels == ident))
        if k < n_out:
            non_mated += images.tolist()
        elif len(images) > gallery_per_identity:
            gallery += images[:gallery_per_identity].tolist()
            mated += images[gallery_per_identity:].tolist()
        else:
            gallery += images.tolist()  # enrolled, nothing left to probe with
    if not mated:
        raise ValueError("no identity has more images than the gallery takes: nothing to probe")
    return GalleryProbeSplit(np.array(gallery), np.array(mated), np.array(non_mated, dtype=np.int64))


def identity_scores(
    probe: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine score of each probe against each enrolled identity (max over its gallery images).
    Returns (scores (P, I), identity labels (I,))."""
    return scores_per_identity(probe @ gallery.T, gallery_labels)


def scores_per_identity(sims: np.ndarray, gallery_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of a probe x gallery similarity matrix reduced to one score per identity (its
    best gallery image). Returns (scores (P, I), identity labels (I,))."""
    ids = np.unique(gallery_labels)
    per_id = np.full((len(sims), len(ids)), -np.inf)
    for j, ident in enumerate(ids):
        per_id[:, j] = sims[:, gallery_labels == ident].max(1)
    return per_id, ids


def mated_ranks(scores: np.ndarray, ids: np.ndarray, probe_labels: np.ndarray) -> np.ndarray:
    """1-based rank of the true identity for each mated probe (ties count against it)."""
    col = np.searchsorted(ids, probe_labels)
    if not np.array_equal(ids[col], probe_labels):
        raise ValueError("a mated probe's identity is not in the gallery")
    true = scores[np.arange(len(scores)), col]
    return (scores >= true[:, None]).sum(1)


def cmc(ranks: np.ndarray, max_rank: int = 20) -> np.ndarray:
    """Cumulative match characteristic: fraction of probes with rank <= k, k = 1..max_rank."""
    return np.array([(ranks <= k).mean() for k in range(1, max_rank + 1)])


def fnir_at_fpir(
    mated_scores: np.ndarray,
    mated_rank: np.ndarray,
    non_mated_top: np.ndarray,
    fpirs: tuple[float, ...] = (0.001, 0.01, 0.1),
) -> dict[str, float | str]:
    """Open-set identification. A mated search succeeds if its true identity is rank 1 with a
    score >= t; FPIR(t) = fraction of non-mated searches whose top score is >= t. For each target
    FPIR, t is the smallest threshold with FPIR <= target."""
    out: dict[str, float | str] = {}
    n = len(non_mated_top)
    top = np.sort(non_mated_top)[::-1]
    for fpir in fpirs:
        if n == 0 or fpir < 1.0 / n:
            out[f"{fpir:g}"] = not_measurable(n, "non-mated searches")
            continue
        allowed = int(np.floor(fpir * n))  # non-mated searches that may pass
        t = np.nextafter(top[allowed], np.inf) if allowed < n else -np.inf
        hit = (mated_rank == 1) & (mated_scores >= t)
        out[f"{fpir:g}"] = float(1 - hit.mean())
    return out


def identification_report(emb: np.ndarray, labels: np.ndarray, split: GalleryProbeSplit, max_rank: int = 20) -> dict:
    g, gl = emb[split.gallery], labels[split.gallery]
    scores, ids = identity_scores(emb[split.mated], g, gl)
    ranks = mated_ranks(scores, ids, labels[split.mated])
    curve = cmc(ranks, min(max_rank, len(ids)))
    report = {
        "gallery_images": len(split.gallery),
        "gallery_identities": len(ids),
        "mated_probes": len(split.mated),
        "non_mated_probes": len(split.non_mated),
        "rank1": float(curve[0]),
        "rank5": float(curve[min(4, len(curve) - 1)]),
        "cmc": curve.tolist(),
    }
    if len(split.non_mated):
        col = np.searchsorted(ids, labels[split.mated])
        true_scores = scores[np.arange(len(scores)), col]
        nm_scores, _ = identity_scores(emb[split.non_mated], g, gl)
        report["fnir_at_fpir"] = fnir_at_fpir(true_scores, ranks, nm_scores.max(1))
    return report
