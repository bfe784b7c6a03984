"""The stolen-store study (serve/protection.py) on constructed galleries: what a thief reads from a
plaintext store is the embeddings themselves (linking and rank-1 as the vectors give them,
checked with sklearn and a loop); from keyed stores, nothing better than chance."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facerec.serve.protection import stolen_store_study


def people(n_ids: int, per_id: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    ids = np.repeat(np.arange(n_ids), per_id)
    x = centres[ids] + 0.6 * rng.standard_normal((len(ids), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.array([f"p{i}" for i in ids])


def test_a_thief_links_plaintext_vectors_as_the_model_does_and_sealed_ones_at_chance(tmp_path):
    emb, ids = people(40, 3, 16, seed=0)
    first = np.arange(0, len(ids), 3)
    rest = np.setdiff1d(np.arange(len(ids)), first)
    report = stolen_store_study(emb[first], ids[first], emb[rest], ids[rest], tmp_path)
    scores = emb[first] @ emb[rest].T
    same = ids[first][:, None] == ids[rest][None, :]
    plain = report["plaintext"]
    assert plain["linking"]["float32 values"]["auc"] == pytest.approx(roc_auc_score(same.ravel(), scores.ravel()))
    assert plain["rank1_with_own_model"] == np.mean(ids[first][scores.argmax(0)] == ids[rest])
    assert plain["stored_bytes_per_vector"] == [64]
    sealed = report["encrypted"]
    assert sealed["stored_bytes_per_vector"] == [1 + 12 + 64 + 16]  # format, nonce, vector, tag: one size
    for view in sealed["linking"].values():
        low, high = view["ci95"]
        assert low < 0.5 < high and abs(view["auc"] - 0.5) < 0.1
    assert sealed["rank1_with_own_model"] <= 5 * report["chance_rank1"]
    assert plain["rank1_with_own_model"] > 0.9
