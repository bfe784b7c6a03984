"""Membership inference from similarity scores only (facerec.analysis.membership): the attacker
submits pairs of images to a black box and sees one score per pair. Planted compactness
(members' images drawn tighter around their centre) is detected; with every pair asked, the
estimate equals the embedding attack's; without a planted difference it is at chance."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.analysis.membership import attack, compactness, scores_only_attack, scores_only_compactness


def population(member_spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """60 members and 60 non-members, 4 images each; non-members spread 0.9 around their centre."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(120), 4)
    centres = rng.standard_normal((120, 32))
    spread = np.where(ids < 60, member_spread, 0.9)[:, None]
    emb = centres[ids] + spread * rng.standard_normal((len(ids), 32))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    names = np.array([f"p{i}" for i in ids])
    return emb, names, {f"p{i}" for i in range(60)}


def black_box(emb: np.ndarray):
    """The service the attacker queries: scores of pairs, never the embeddings; counts the pairs."""
    asked = []

    def query(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        asked.append(len(left))
        return (emb[left] * emb[right]).sum(1)

    return query, asked


def test_planted_compactness_is_detected_from_a_few_scores_per_person():
    emb, names, members = population(member_spread=0.6)
    query, asked = black_box(emb)
    found = scores_only_attack(query, names, members, pairs_per_identity=2, n_boot=200)
    assert found["auc"] > 0.9 and found["auc_ci"][0] > 0.8
    assert sum(asked) == 120 * 2 and found["members"] == found["non_members"] == 60


def test_with_every_pair_asked_the_scores_give_the_embedding_attacks_compactness():
    emb, names, members = population(member_spread=0.7, seed=1)
    query, asked = black_box(emb)
    from_scores = scores_only_compactness(query, names)
    from_embeddings = compactness(emb, names)
    assert from_scores.keys() == from_embeddings.keys()
    assert np.allclose([from_scores[k] for k in from_embeddings], list(from_embeddings.values()), atol=1e-12)
    assert sum(asked) == 120 * 6  # 4 images: 6 pairs each
    assert scores_only_attack(query, names, members, n_boot=100)["auc"] == pytest.approx(
        attack(emb, names, members, n_boot=100)["auc"]
    )


def test_without_a_planted_difference_the_attack_is_at_chance():
    emb, names, members = population(member_spread=0.9, seed=2)
    query, _ = black_box(emb)
    found = scores_only_attack(query, names, members, pairs_per_identity=3, n_boot=300)
    assert found["auc_ci"][0] < 0.5 < found["auc_ci"][1]
