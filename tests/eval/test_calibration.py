"""Calibration of a threshold for a target FAR: the threshold against brute force and the analytic
quantile of known score distributions, bootstrap coverage of the true FMR, the impostor-count
rules, pair scoring of a tree against loops, and `facerec calibrate` writing a card and a gallery."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest
from scipy.stats import norm

from facerec.cli import main
from facerec.eval.calibration import (
    CrossPairs,
    ListedPairs,
    calibrate,
    fmr_at,
    fnmr_at,
    pair_trials,
    threshold_at_far,
    tree_trials,
)
from facerec.models.io import load_recognition_model

SD = 0.1  # impostor ~ N(0, SD) in the known-distribution tests


def labelled(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[genuine, impostor], np.r_[np.ones(len(genuine), bool), np.zeros(len(impostor), bool)]


# ---- the threshold -------------------------------------------------------------------------
@pytest.mark.parametrize("far", [0.01, 0.05, 0.1, 0.37])
def test_threshold_is_the_smallest_impostor_score_within_the_target(far):
    rng = np.random.default_rng(3)
    impostor = np.round(rng.normal(0, SD, 400), 2)  # rounded: many ties
    genuine = np.round(rng.normal(0.3, SD, 100), 2)
    trials = pair_trials(*labelled(genuine, impostor), far)
    t = threshold_at_far(trials.impostor, trials.impostor_count, far)

    def brute_fmr(s: float) -> float:
        return sum(1 for x in impostor if x >= s) / len(impostor)

    assert t in set(impostor.tolist())
    assert brute_fmr(t) <= far
    assert all(brute_fmr(s) > far for s in impostor if s < t)
    assert fmr_at(trials, t) == brute_fmr(t)
    assert fnmr_at(trials, t) == sum(1 for x in genuine if x < t) / len(genuine)


def test_fnmr_averaged_over_subjects():
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.0, 0.1, 0.2, 0.3, 0.4])
    same = np.array([True] * 5 + [False] * 5)
    left = np.array(["a", "a", "a", "a", "b", "a", "a", "b", "b", "c"])
    right = np.array(["a", "a", "a", "a", "b", "b", "c", "c", "a", "b"])
    cal, _ = calibrate(pair_trials(scores, same, 0.2, left, right), 0.2, n_boot=0)
    assert cal.threshold == 0.4  # one of 5 impostors at or above it
    # subject a: 4 mated pairs, 3 below 0.4; subject b: 1 pair, above
    assert cal.largest_subject_mated_share == 4 / 5 and cal.fnmr_subject_mean == (3 / 4 + 0) / 2
    assert cal.fnmr == 3 / 5


def test_threshold_matches_the_analytic_quantile():
    rng = np.random.default_rng(0)
    far, n = 1e-2, 200_000
    trials = pair_trials(*labelled(rng.normal(0.6, SD, 1000), rng.normal(0, SD, n)), far)
    cal, _ = calibrate(trials, far, n_boot=0)
    quantile = SD * norm.isf(far)
    # standard error of an empirical quantile: sqrt(p (1 - p) / n) / density at the quantile
    se = np.sqrt(far * (1 - far) / n) / norm.pdf(quantile, scale=SD)
    assert abs(cal.threshold - quantile) < 4 * se
    assert cal.fmr <= far and cal.false_matches == int(far * n)


def test_intervals_cover_the_true_rates_of_known_distributions():
    """Impostor ~ N(0, 0.1), genuine ~ N(0.35, 0.1): the true FMR and FNMR of each calibrated
    threshold are known; their 95% intervals must hold them in most of 100 independent runs."""
    rng = np.random.default_rng(1)
    far, hits = 1e-2, {"fmr": 0, "fnmr": 0, "threshold": 0}
    quantile = SD * norm.isf(far)
    for run in range(100):
        trials = pair_trials(*labelled(rng.normal(0.35, SD, 500), rng.normal(0, SD, 5000)), far)
        cal, _ = calibrate(trials, far, n_boot=300, seed=run)
        true = {"fmr": norm.sf(cal.threshold, scale=SD), "fnmr": norm.cdf(cal.threshold, 0.35, SD)}
        hits["fmr"] += cal.fmr_ci[0] <= true["fmr"] <= cal.fmr_ci[1]
        hits["fnmr"] += cal.fnmr_ci[0] <= true["fnmr"] <= cal.fnmr_ci[1]
        hits["threshold"] += cal.threshold_ci[0] <= quantile <= cal.threshold_ci[1]
    assert min(hits.values()) >= 85, hits
    assert cal.bootstrap_unit.startswith("pairs")


def clustered_pairs(rng: np.random.Generator, subjects: int = 100, images: int = 2):
    """Every cross-subject image pair; impostor score = x_a + x_b + noise with a subject effect
    x ~ N(0, 0.05) (some people look like many), so the pairs of one person are correlated."""
    effect = rng.normal(0, 0.05, subjects)
    owner = np.repeat(np.arange(subjects), images)
    i, j = np.triu_indices(len(owner), 1)
    same = owner[i] == owner[j]
    scores = np.where(same, 0.5, effect[owner[i]] + effect[owner[j]]) + rng.normal(0, 0.08, len(i))
    return scores, same, owner[i], owner[j], np.sqrt(2 * 0.05**2 + 0.08**2)


def test_subject_bootstrap_covers_the_true_fmr_of_correlated_pairs():
    """Resampling subjects covers the true FMR; resampling the correlated pairs as if they were
    independent would not (the reason subjects are resampled when known)."""
    rng = np.random.default_rng(2)
    far, hits = 1e-2, {"subjects": 0, "pairs": 0}
    for run in range(100):
        scores, same, left, right, sd = clustered_pairs(rng)
        for unit, subjects in (("subjects", (left, right)), ("pairs", (None, None))):
            cal, _ = calibrate(pair_trials(scores, same, far, *subjects), far, n_boot=200, seed=run)
            assert cal.bootstrap_unit.startswith(unit)
            hits[unit] += cal.fmr_ci[0] <= norm.sf(cal.threshold, scale=sd) <= cal.fmr_ci[1]
    assert hits["subjects"] >= 85 and hits["pairs"] < 70, hits


def test_contradicting_subject_labels_fall_back_to_pairs():
    scores, same = labelled(np.full(5, 0.8), np.linspace(-0.5, 0.5, 200))
    trials = pair_trials(scores, same, 0.05, np.zeros(205, int), np.zeros(205, int))  # one 'subject'
    assert not trials.by_subject and "contradict" in calibrate(trials, 0.05, n_boot=10)[0].bootstrap_unit


def test_too_few_impostor_pairs():
    rng = np.random.default_rng(4)
    for n, expect in ((999, None), (1000, "max")):
        impostor = rng.normal(0, SD, n)
        cal, boot = calibrate(pair_trials(*labelled(rng.normal(0.6, SD, 50), impostor), 1e-3), 1e-3, n_boot=20)
        if expect is None:
            assert cal.threshold is None and boot is None
            assert "too few impostor pairs (999 < 1/FAR = 1000)" in cal.reason
        else:  # one false match allowed: the highest impostor score itself
            assert cal.threshold == impostor.max() and cal.false_matches == 1
            assert "30/FAR = 30000" in cal.warning


# ---- scoring a tree, resampled totals -------------------------------------------------------
def test_tree_trials_against_loops():
    rng = np.random.default_rng(5)
    identities = np.array([f"p{i}" for i in rng.integers(0, 7, 45)])
    emb = rng.normal(size=(45, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    far = 0.01
    trials = tree_trials(emb, identities, far, rows_per_block=4)  # several blocks
    genuine, impostor = [], []
    for i, j in itertools.combinations(range(45), 2):
        score = float(emb[i] @ emb[j])
        (genuine if identities[i] == identities[j] else impostor).append(score)
    assert trials.impostor_count == len(impostor) and len(trials.impostor) < len(impostor)  # a kept tail
    np.testing.assert_allclose(np.sort(trials.genuine), np.sort(genuine), atol=1e-6)
    np.testing.assert_allclose(trials.impostor, np.sort(impostor)[::-1][: len(trials.impostor)], atol=1e-6)
    assert len(trials.sample) == len(impostor)  # fewer impostors than the plot sample: all of them
    t = threshold_at_far(trials.impostor, trials.impostor_count, far)
    assert t == pytest.approx(threshold_at_far(np.sort(impostor)[::-1], len(impostor), far), abs=1e-6)
    names = np.unique(identities)
    for (a, b), score in zip(trials.impostor_subjects, trials.impostor, strict=True):
        assert names[a] != names[b]
        pairs = [
            emb[i] @ emb[j]
            for i, j in itertools.combinations(range(45), 2)
            if {identities[i], identities[j]} == {names[a], names[b]}
        ]
        assert np.isclose(pairs, score, atol=1e-6).any()


def test_resampled_impostor_totals_against_enumeration():
    rng = np.random.default_rng(6)
    sizes = np.array([3, 1, 4, 2])
    weights = rng.integers(0, 3, (5, 4)).astype(float)
    owner = np.repeat(np.arange(4), sizes)
    for w, got in zip(weights, CrossPairs(sizes).total(weights), strict=True):
        # resampled tree: every image of every copy of a drawn subject; pairs of distinct subjects
        copies = [(o, c) for o in owner for c in range(int(w[o]))]
        expected = sum(1 for x, y in itertools.combinations(copies, 2) if x[0] != y[0])
        assert got == expected
    pairs, counts = np.array([[0, 1], [1, 3], [0, 2]]), np.array([2, 1, 5])
    expected = [sum(c * w[a] * w[b] for (a, b), c in zip(pairs, counts, strict=True)) for w in weights]
    np.testing.assert_allclose(ListedPairs(pairs, counts).total(weights), expected)


# ---- the command ---------------------------------------------------------------------------
def test_cli_writes_a_card_whose_threshold_loads_back(tree, tmp_path, capsys):
    card = tmp_path / "calibrated.pt"
    args = ["calibrate", "fast", str(tree), "--far", "0.1", "--detector", "none", "--bootstrap", "50"]
    assert main([*args, "--out", str(tmp_path / "out"), "--write-card", str(card)]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    cal = report["calibration"]
    assert (cal["impostor_pairs"], cal["mated_pairs"], cal["subjects"]) == (54, 12, 4)  # 4 people x 3 images
    assert (tmp_path / "out" / "calibration.png").stat().st_size > 0
    model = load_recognition_model(card)
    record = model.card.threshold_for("none", True)
    assert record.value == cal["threshold"] and record.target_far == 0.1
    assert model.card.digest == load_recognition_model("fast").card.digest  # same weights
    # the file is not overwritten, and the shipped default never is
    assert main([*args, "--out", str(tmp_path / "out2"), "--write-card", str(card)]) == 2
    assert "exists" in capsys.readouterr().err


def test_cli_says_when_there_are_too_few_impostor_pairs(tree, tmp_path, capsys):
    code = main(["calibrate", "fast", str(tree), "--far", "1e-3", "--detector", "none", "--out", str(tmp_path)])
    assert code == 1
    assert "too few impostor pairs (54 < 1/FAR = 1000)" in capsys.readouterr().out


def test_cli_on_a_pairs_csv_sets_a_gallery_threshold(tree, tmp_path, capsys):
    from facerec.serve.store import SQLiteStore

    images = sorted(tree.rglob("*.png"))
    with (tmp_path / "pairs.csv").open("w", newline="") as fh:
        rows = [(a, b, int(a.parent == b.parent)) for a, b in itertools.combinations(images, 2)]
        csv.writer(fh).writerows(rows)
    digest = load_recognition_model("fast").card.digest
    with SQLiteStore(tmp_path / "store.db", None, plaintext=True) as store:
        store.create_gallery("g", "default", digest, {"detector": "mtcnn", "flip": True}, 128)
        store.create_gallery("noflip", "default", digest, {"detector": "none", "flip": False}, 128)
    target = f"{tmp_path / 'store.db'}:g"
    args = ["calibrate", "fast", str(tmp_path / "pairs.csv"), "--pairs", "--far", "0.1", "--detector", "none"]
    assert main([*args, "--out", str(tmp_path / "out"), "--gallery", target, "--plaintext", "--bootstrap", "20"]) == 0
    cal = json.loads((tmp_path / "out" / "report.json").read_text())["calibration"]
    assert cal["bootstrap_unit"] == "subjects" and cal["impostor_pairs"] == 54
    assert "enrolled through detector mtcnn" in capsys.readouterr().out
    with SQLiteStore(tmp_path / "store.db", None, plaintext=True) as store:
        assert store.gallery("g").threshold == pytest.approx(cal["threshold"])
    noflip = f"{tmp_path / 'store.db'}:noflip"
    assert main([*args, "--out", str(tmp_path / "o2"), "--gallery", noflip, "--plaintext", "--bootstrap", "0"]) == 2
    assert "flip=False" in capsys.readouterr().err
