"""The migration map and table (facerec.analysis.migration) against independent references: the
ridge normal equations and a cross-validation loop, brute-force rank-1 and sklearn's ROC, and
spaces whose relation is known (exactly linear: nothing lost; unrelated: chance)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from facerec.analysis.linear_map import LAMBDAS, fit_ridge
from facerec.analysis.migration import (
    fit_map,
    gallery_metrics,
    linking_auc,
    migration_table,
    split,
)
from facerec.errors import DataError


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def people(n_ids: int, per_id: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    ids = np.repeat(np.arange(n_ids), per_id)
    return unit(centres[ids] + spread * rng.standard_normal((len(ids), dim))), np.array([f"id{i}" for i in ids])


def test_the_map_and_its_lambda_follow_a_cross_validation_loop_over_the_normal_equations():
    rng = np.random.default_rng(0)
    old = unit(rng.standard_normal((60, 8)))
    new = unit(old @ rng.standard_normal((8, 5)) + 0.4 * rng.standard_normal((60, 5)))
    fitted = fit_map(old, new, folds=4, seed=3)
    fold = np.random.default_rng(3).permutation(60) % 4
    best, best_cos = None, -np.inf
    for lam in LAMBDAS:
        cos = []
        for k in range(4):
            m = fit_ridge(old[fold != k], new[fold != k], lam)
            for x, y in zip(old[fold == k], new[fold == k], strict=True):
                p = x @ m
                cos.append(p @ y / np.linalg.norm(p))
        if np.mean(cos) > best_cos:
            best, best_cos = lam, np.mean(cos)
    assert fitted.lam == best and fitted.calibration == 60
    assert fitted.held_out_cosine == pytest.approx(best_cos, abs=1e-9)
    assert fitted.loss == pytest.approx(1 - best_cos, abs=1e-9)
    assert np.allclose(fitted.matrix, fit_ridge(old, new, best), atol=1e-9)


def test_the_map_refuses_unusable_calibration_sets():
    rng = np.random.default_rng(1)
    with pytest.raises(DataError, match="one old and one new embedding per face"):
        fit_map(rng.random((20, 4)), rng.random((19, 4)))
    with pytest.raises(DataError, match="5 faces are too few"):
        fit_map(rng.random((5, 4)), rng.random((5, 4)))
    bad = rng.random((20, 4))
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN or infinite"):
        fit_map(bad, rng.random((20, 4)))


def test_gallery_metrics_match_a_brute_force_loop_and_sklearn():
    emb, ids = people(15, 4, 12, spread=0.9, seed=2)
    gallery, probes = np.arange(0, 60, 4), np.setdiff1d(np.arange(60), np.arange(0, 60, 4))
    got = gallery_metrics(emb[gallery], ids[gallery], emb[probes], ids[probes], fars=(0.1, 0.02))
    hits, scores, same = 0, [], []
    for p in probes:
        per_id = {ids[g]: emb[p] @ emb[g] for g in gallery}
        hits += max(per_id, key=per_id.get) == ids[p]
        for name, score in per_id.items():
            scores.append(score)
            same.append(name == ids[p])
    assert got["rank1"] == pytest.approx(hits / len(probes))
    fpr, tpr, _ = sk_roc_curve(same, scores)
    for far in (0.1, 0.02):
        assert got["tar_at_far"][f"{far:g}"] == pytest.approx(tpr[fpr <= far + 1e-12].max())


def test_a_map_between_exactly_related_spaces_loses_nothing_at_any_calibration_size():
    old, ids = people(120, 5, 16, spread=0.8, seed=3)
    q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((24, 16)))
    new = old @ q.T  # orthonormal rows: norms and angles kept
    parts = split(ids, np.unique(ids)[:60], seed=0)
    report = migration_table(old, new, ids, parts, sizes=(50, 200, 1000), repeats=2)
    assert report["mapped"][-1] == {"calibration": 1000, "skipped": "pool has 300"}
    for row in report["mapped"][:2]:
        assert row["rank1"]["mean"] == pytest.approx(report["re_enrolled"]["rank1"])
        assert row["loss"]["mean"] < 1e-4
        for far, value in report["re_enrolled"]["tar_at_far"].items():
            assert row["tar_at_far"][far]["mean"] == pytest.approx(value)


def test_a_map_between_unrelated_spaces_leaves_rank1_at_chance():
    old, ids = people(200, 4, 16, spread=0.5, seed=5)
    new, _ = people(200, 4, 16, spread=0.5, seed=6)  # the same people, another model that shares nothing
    parts = split(ids, np.unique(ids)[:100], seed=0)
    report = migration_table(old, new, ids, parts, sizes=(300,), repeats=1)
    assert report["re_enrolled"]["rank1"] > 0.9
    assert report["mapped"][0]["rank1"]["mean"] < 5 * report["chance_rank1"]
    assert report["mapped"][0]["loss"]["mean"] > 0.8


def test_the_split_keeps_calibration_people_apart():
    _, ids = people(10, 3, 4, spread=1.0, seed=7)
    parts = split(ids, np.array(["id0", "id1", "id2"]))
    assert set(ids[parts.calibration_pool]) == {"id0", "id1", "id2"}
    assert not set(ids[parts.calibration_pool]) & set(ids[np.r_[parts.gallery, parts.probes]])
    assert len(parts.gallery) == 7 and len(parts.probes) == 14
    with pytest.raises(DataError, match="some, but not all"):
        split(ids, np.unique(ids))


def test_linking_auc_separates_linkable_rows_from_noise():
    emb, ids = people(30, 3, 16, spread=0.3, seed=8)
    noise = np.random.default_rng(9).standard_normal(emb.shape)
    assert linking_auc(emb, ids) > 0.99
    assert abs(linking_auc(noise, ids) - 0.5) < 0.1
    # on every pair (more non-mated draws than pairs exist), sklearn's AUC of the same scores
    rows, cols = np.triu_indices(len(emb), 1)
    same = ids[rows] == ids[cols]
    scores = (emb[rows] * emb[cols]).sum(1)
    assert linking_auc(emb, ids, non_mated=200_000) == pytest.approx(roc_auc_score(same, scores), abs=0.01)
