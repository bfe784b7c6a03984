"""Verification and identification metrics against scikit-learn and brute-force loops."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import roc_curve as sk_roc_curve

from facerec.eval.identification import (
    cmc,
    fnir_at_fpir,
    gallery_probe_split,
    identification_report,
    identity_scores,
    mated_ranks,
)
from facerec.eval.metrics import auc, eer, roc_curve, tar_at_far
from facerec.eval.report import read_published_roc, verification_metrics


def random_scores(seed: int, n: int = 500, ties: bool = False):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.4
    scores = rng.normal(same * 1.5, 1.0)
    if ties:
        scores = np.round(scores, 1)
    return scores, same


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_roc_and_auc_match_sklearn(seed, ties):
    scores, same = random_scores(seed, ties=ties)
    roc = roc_curve(scores, same)
    fpr, tpr, thr = sk_roc_curve(same, scores, drop_intermediate=False)
    np.testing.assert_allclose(roc.fpr, fpr)
    np.testing.assert_allclose(roc.tpr, tpr)
    np.testing.assert_allclose(roc.thresholds[1:], thr[1:])
    assert auc(roc) == pytest.approx(sk_auc(fpr, tpr))


def brute_force_rates(scores, same, t):
    return ((scores >= t) & ~same).sum() / (~same).sum(), ((scores >= t) & same).sum() / same.sum()


@pytest.mark.parametrize("seed", range(3))
def test_tar_at_far_matches_a_threshold_sweep(seed):
    scores, same = random_scores(seed, n=2000)
    roc = roc_curve(scores, same)
    for far in (0.1, 0.01, 0.002):
        best = 0.0
        for t in np.r_[np.inf, np.unique(scores)]:
            fa, ta = brute_force_rates(scores, same, t)
            if fa <= far:
                best = max(best, ta)
        assert tar_at_far(roc, far) == pytest.approx(best)
    assert tar_at_far(roc, 1e-6) is None  # fewer than a million impostors: not measurable


def test_eer_is_where_far_equals_frr():
    scores, same = random_scores(0, n=4000)
    value = eer(roc_curve(scores, same))
    rates = [brute_force_rates(scores, same, t) for t in np.unique(scores)]
    gaps = [abs(fa - (1 - ta)) for fa, ta in rates]
    fa, ta = rates[int(np.argmin(gaps))]
    assert value == pytest.approx((fa + 1 - ta) / 2, abs=2e-3)
    # two Gaussians 1.5 sigma apart cross at 0.75 sigma: EER = 1 - Phi(0.75) = 0.2266
    assert value == pytest.approx(0.2266, abs=0.02)


def test_verification_metrics_report_unmeasurable_far():
    scores, same = random_scores(1, n=600)
    report = verification_metrics(scores, same, np.arange(600) // 60)
    assert isinstance(report["tar_at_far"]["0.001"], str) and "not measurable" in report["tar_at_far"]["0.001"]
    assert isinstance(report["tar_at_far"]["0.1"], float)
    assert len(report["fold_accuracies"]) == 10


def test_published_roc_reader_detects_column_order(tmp_path):
    (tmp_path / "a.txt").write_text("0.5 0.0\n0.9 0.1\n1.0 1.0\n")
    (tmp_path / "b.txt").write_text("0.0 0.5\n0.1 0.9\nNaN 1\n1.0 1.0\n")
    for name in ("a.txt", "b.txt"):
        fpr, tpr = read_published_roc(tmp_path / name)
        np.testing.assert_allclose(fpr, [0.0, 0.1, 1.0])
        np.testing.assert_allclose(tpr, [0.5, 0.9, 1.0])


def clustered(ids: int, per: int, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(ids, 32))
    labels = np.repeat(np.arange(ids), per)
    emb = centers[labels] + rng.normal(size=(ids * per, 32)) * noise
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), labels


def test_ranks_and_cmc_match_brute_force():
    emb, labels = clustered(15, 4, 1.2)
    split = gallery_probe_split(labels, seed=3, gallery_per_identity=1)
    scores, ids = identity_scores(emb[split.mated], emb[split.gallery], labels[split.gallery])
    ranks = mated_ranks(scores, ids, labels[split.mated])
    for p, probe in enumerate(split.mated):
        per_id = {}
        for g in split.gallery:
            per_id[labels[g]] = max(per_id.get(labels[g], -9), float(emb[probe] @ emb[g]))
        ordered = sorted(per_id, key=lambda k: -per_id[k])
        assert ranks[p] == ordered.index(labels[probe]) + 1
    curve = cmc(ranks, 5)
    assert all(curve[k] == pytest.approx(np.mean(ranks <= k + 1)) for k in range(5))
    assert 0 < curve[0] < 1


def test_gallery_probe_split_is_disjoint_and_deterministic():
    labels = np.repeat(np.arange(20), 3)
    a = gallery_probe_split(labels, seed=1, unenrolled_fraction=0.25)
    b = gallery_probe_split(labels, seed=1, unenrolled_fraction=0.25)
    assert np.array_equal(a.gallery, b.gallery) and np.array_equal(a.non_mated, b.non_mated)
    assert not set(labels[a.non_mated]) & set(labels[a.gallery])
    assert set(labels[a.mated]) <= set(labels[a.gallery])
    assert len(set(a.gallery) | set(a.mated) | set(a.non_mated)) == 60


def test_fnir_at_fpir_matches_a_threshold_sweep():
    rng = np.random.default_rng(0)
    mated_scores = rng.normal(0.6, 0.1, 300)
    mated_rank = np.where(rng.random(300) < 0.9, 1, 2)
    non_mated = rng.normal(0.3, 0.1, 1000)
    got = fnir_at_fpir(mated_scores, mated_rank, non_mated, (0.01, 0.1, 0.0001))
    for fpir in (0.01, 0.1):
        best = 1.0
        # the best thresholds sit just above a non-mated score
        for t in np.r_[non_mated.min(), np.nextafter(np.unique(non_mated), np.inf)]:
            if (non_mated >= t).mean() <= fpir:
                best = min(best, 1 - ((mated_rank == 1) & (mated_scores >= t)).mean())
        assert got[f"{fpir:g}"] == pytest.approx(best)
    assert "not measurable" in got["0.0001"]


def test_identification_report_on_separable_clusters():
    emb, labels = clustered(30, 4, 0.05)
    report = identification_report(emb, labels, gallery_probe_split(labels, 0, 1, 0.3))
    assert report["rank1"] == 1.0
    assert report["fnir_at_fpir"]["0.1"] == 0.0
