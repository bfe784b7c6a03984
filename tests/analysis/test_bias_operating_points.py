"""Per-group operating points of the bias analysis: each group's own threshold for the target FMR
on its within-group impostor pairs and its FNMR at the global and its own threshold, against a
loop over all image pairs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facerec.analysis import bias


def population(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three groups: 'tight' (faces of its people alike: high impostor scores), 'loose', and
    'tiny' (two people: too few pairs for an own threshold or an FNMR)."""
    rng = np.random.default_rng(seed)
    dim, emb, ids, grp = 12, [], [], []
    for name, subjects, spread in (("tight", 14, 0.6), ("loose", 14, 1.5), ("tiny", 2, 1.0)):
        direction = rng.normal(size=dim) * 1.5
        for s in range(subjects):
            center = direction + spread * rng.normal(size=dim)
            for _ in range(3):
                emb.append(center + 0.5 * rng.normal(size=dim))
                ids.append(f"{name}{s}")
                grp.append(name)
    emb = np.array(emb)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), np.array(ids), np.array(grp, dtype=object)


def loop_points(emb, ids, grp, t_global, target, min_mated):
    """The operating points written out with loops over every pair."""
    out = {}
    for name in sorted(set(grp)):
        members = [i for i in range(len(emb)) if grp[i] == name]
        impostor, mated = [], []
        for i, j in itertools.combinations(members, 2):
            (mated if ids[i] == ids[j] else impostor).append(float(emb[i] @ emb[j]))
        entry = {"impostor_pairs": len(impostor), "mated_pairs": len(mated)}
        entry["fmr_at_global"] = sum(s >= t_global for s in impostor) / len(impostor)
        own = None
        if len(impostor) >= 1 / target:
            k = max(1, round(target * len(impostor)))
            own = sorted(impostor, reverse=True)[k - 1]
            entry["threshold"] = own
            entry["fmr_at_own"] = sum(s >= own for s in impostor) / len(impostor)
        if len(mated) >= min_mated:
            entry["fnmr_at_global"] = sum(s < t_global for s in mated) / len(mated)
            if own is not None:
                entry["fnmr_at_own"] = sum(s < own for s in mated) / len(mated)
        out[name] = entry
    return out


def test_operating_points_match_a_loop_over_all_pairs():
    emb, ids, grp = population()
    codes = np.unique(ids, return_inverse=True)[1]
    target, min_mated = 0.02, 20
    t_global = bias.impostor_threshold(emb, codes, target)
    points = bias.operating_points(emb, codes, grp, t_global, target, min_mated, chunk=5)
    expected = loop_points(emb, ids, grp, t_global, target, min_mated)
    assert points["global_threshold"] == t_global and set(points["groups"]) == set(expected)
    for name, want in expected.items():
        got = points["groups"][name]
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-9), (name, key)
    tiny = points["groups"]["tiny"]  # 2 people x 3 images: 9 impostor pairs, 6 mated pairs
    assert "too few impostor pairs (9 < 50)" in tiny["threshold"]
    assert "too few mated pairs (6 < 20)" in tiny["fnmr_at_global"] and "fnmr_at_own" not in tiny
    # the tight group needs a stricter threshold than the global one, the loose group a laxer one
    tight, loose = points["groups"]["tight"], points["groups"]["loose"]
    assert tight["threshold"] > t_global > loose["threshold"]
    assert tight["fmr_at_global"] > target > loose["fmr_at_global"]
    assert tight["fnmr_at_own"] >= tight["fnmr_at_global"]


def test_bias_report_holds_the_operating_points_beside_the_global_rates(tmp_path):
    emb, ids, grp = population(1)
    report = bias.analyze(emb, ids, grp, tmp_path, target_fmr=0.02, components=3, n_boot=20, min_mated=20)
    points = report["operating_points"]
    assert points["global_threshold"] == report["threshold"]
    for name, rates in report["groups"].items():  # the same pairs as the global rates count
        own = points["groups"][name]
        assert own["impostor_pairs"] == rates["impostor_pairs"] and own["mated_pairs"] == rates["mated_pairs"]
        if isinstance(rates["fmr"], float):
            assert own["fmr_at_global"] == pytest.approx(rates["fmr"])
        if isinstance(rates["fnmr"], float):
            assert own["fnmr_at_global"] == pytest.approx(rates["fnmr"])
    table = (tmp_path / "operating_points.md").read_text()
    assert table.count("\n") == 2 + len(report["groups"]) and "| tight |" in table


def test_faces_without_identity_labels_get_false_match_rates_only(tmp_path):
    """Each face its own subject (a face set with attribute labels but no identities, e.g.
    UTKFace): no similarity matrix or FNMR is measurable, and the per-group FMR at the global
    threshold equals a loop over all pairs of distinct faces of the group."""
    emb, _, grp = population(2)
    ids = np.array([f"face{i}" for i in range(len(emb))])
    report = bias.analyze(emb, ids, grp, tmp_path, target_fmr=0.02, components=3, n_boot=20, min_mated=20)
    assert "not computed" in report["matrix_subjects"] and "clustering_index" not in report
    assert not (tmp_path / "similarity_matrix.png").exists() and (tmp_path / "report.json").is_file()
    t = report["threshold"]
    for name in ("tight", "loose"):
        members = np.flatnonzero(grp == name)
        scores = [float(emb[i] @ emb[j]) for i, j in itertools.combinations(members, 2)]
        assert report["groups"][name]["fmr"] == pytest.approx(sum(s >= t for s in scores) / len(scores))
        assert report["groups"][name]["mated_pairs"] == 0 and isinstance(report["groups"][name]["fnmr"], str)
    assert report["groups"]["tight"]["fmr"] > report["groups"]["loose"]["fmr"]
    # two subjects with two faces give a single non-mated score: still no matrix, and no crash
    ids[:2], ids[2:4] = "a", "b"
    report = bias.analyze(emb, ids, grp, tmp_path / "two", target_fmr=0.02, components=3, n_boot=20)
    assert "not computed" in report["matrix_subjects"]
