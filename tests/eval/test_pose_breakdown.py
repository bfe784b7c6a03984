"""Verification by |yaw difference| within a pair: every number of the breakdown against a
brute-force loop over the pairs, and the breakdown in a pair protocol's report."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from PIL import Image

from facerec.align.pose_files import POSE_FILE
from facerec.data.synthetic import SyntheticFaces
from facerec.eval.pose_breakdown import yaw_breakdown
from facerec.eval.verification import kfold_accuracy

EDGES = (0, 10, 20, 30, 45)


def brute_force(scores, same, folds, thresholds, diff, far, min_pairs):
    """The breakdown by plain loops: each pair's threshold by its fold's rank, the overall FAR
    threshold by trying every score."""
    fold_ids = sorted(set(folds.tolist()))
    threshold_of = {f: thresholds[k] for k, f in enumerate(fold_ids)}
    impostor_scores = [s for s, y in zip(scores, same, strict=True) if not y]
    candidates = sorted(set(scores.tolist()) | {math.inf})
    # the lowest threshold accepting at most far * impostors
    overall = min(t for t in candidates if sum(s >= t for s in impostor_scores) <= far * len(impostor_scores) + 1e-9)
    bounds = [*EDGES, math.inf]
    rows = []
    for lo, hi in itertools.pairwise(bounds):
        members = [i for i in range(len(scores)) if not math.isnan(diff[i]) and lo <= diff[i] < hi]
        genuine = [i for i in members if same[i]]
        impostor = [i for i in members if not same[i]]
        right = [(scores[i] >= threshold_of[folds[i]]) == same[i] for i in members]
        own = None
        if genuine and impostor:  # the range's own ROC: best TAR over thresholds with FAR <= far
            own = max(
                sum(scores[i] >= t for i in genuine) / len(genuine)
                for t in candidates
                if sum(scores[i] >= t for i in impostor) <= far * len(impostor) + 1e-9
            )
        rows.append(
            {
                "genuine": len(genuine),
                "impostor": len(impostor),
                "accuracy": sum(right) / len(right) if members else None,
                "tar_fold": sum(scores[i] >= threshold_of[folds[i]] for i in genuine) / len(genuine)
                if genuine
                else None,
                "tnr_fold": sum(scores[i] < threshold_of[folds[i]] for i in impostor) / len(impostor)
                if impostor
                else None,
                "tar_overall": sum(scores[i] >= overall for i in genuine) / len(genuine) if genuine else None,
                "tar_own": own,
                "too_few": len(genuine) < min_pairs or len(impostor) < min_pairs,
            }
        )
    return rows


@pytest.mark.parametrize("protocol_folds", ["ten", "one"])
def test_breakdown_equals_brute_force(protocol_folds):
    rng = np.random.default_rng(7)
    n = 600
    same = rng.random(n) < 0.5
    diff = np.abs(rng.normal(0, 25, n))
    diff[rng.random(n) < 0.05] = np.nan  # images without a pose
    # genuine scores fall as the yaw difference grows (NaN diff: a middle value)
    scores = np.where(same, 0.7 - 0.008 * np.nan_to_num(diff, nan=20.0), 0.1) + rng.normal(0, 0.15, n)
    scores = np.round(scores, 2)  # ties, as real cosine scores have after rounding
    folds = np.arange(n) // 60 if protocol_folds == "ten" else np.full(n, 9)
    kfold = kfold_accuracy(scores, same, folds)
    got = yaw_breakdown(scores, same, folds, kfold.thresholds, diff, EDGES, min_pairs=40, fars=(0.1, 0.01))
    # with one protocol fold the thresholds belong to ten interleaved sub-folds
    brute_folds = folds if protocol_folds == "ten" else np.arange(n) % 10
    for far in (0.1, 0.01):
        expected = brute_force(scores, same, brute_folds, kfold.thresholds, diff, far, min_pairs=40)
        for row, want in zip(got["buckets"], expected, strict=True):
            assert (row["genuine"], row["impostor"]) == (want["genuine"], want["impostor"])
            assert row["accuracy"] == pytest.approx(want["accuracy"])
            assert row["tar_at_fold_thresholds"] == pytest.approx(want["tar_fold"])
            assert row["tnr_at_fold_thresholds"] == pytest.approx(want["tnr_fold"])
            assert row["tar_at_overall_far"][f"{far:g}"] == pytest.approx(want["tar_overall"])
            own = row["tar_at_far"][f"{far:g}"] if row["tar_at_far"] else None
            if isinstance(own, str):  # too few impostors in the range for this FAR
                assert far * want["impostor"] < 1
            else:
                assert own == pytest.approx(want["tar_own"])
            assert (row["too_few"] is not None) == want["too_few"]
    assert got["pairs_without_pose"] == int(np.isnan(diff).sum())
    assert sum(r["genuine"] + r["impostor"] for r in got["buckets"]) == got["pairs_with_pose"]
    assert got["pairs_without_pose"] > 0  # the test covers images without a pose
    # a range whose genuine scores are lower must not come out more accurate on the genuine side
    tars = [r["tar_at_fold_thresholds"] for r in got["buckets"] if r["genuine"] >= 40]
    assert tars[0] > tars[-1]


def test_a_range_without_pairs_reports_none():
    scores = np.array([0.9, 0.8, 0.1, 0.2])
    same = np.array([True, True, False, False])
    kfold = kfold_accuracy(scores, same, np.array([0, 1, 0, 1]))
    got = yaw_breakdown(scores, same, np.array([0, 1, 0, 1]), kfold.thresholds, np.array([1.0, 2.0, 3.0, 50.0]))
    empty = got["buckets"][1]
    assert empty["genuine"] == empty["impostor"] == 0 and empty["accuracy"] is None and empty["tar_at_far"] is None
    assert "too few genuine pairs (0 < 50)" in empty["too_few"]
    assert got["buckets"][-1]["range"] == ">45" and got["buckets"][-1]["impostor"] == 1


def test_pair_protocol_reports_the_breakdown_from_a_pose_file_beside_the_images(tmp_path):
    from facerec.eval.protocols import build_protocol
    from facerec.pipeline import RecognitionPipeline

    faces = SyntheticFaces(6, 4, size=112)
    names = []
    for i in range(len(faces)):
        name = f"id{faces.label(i)}/{i}.png"
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(faces.render(i)).save(tmp_path / name)
        names.append(name)
    rng = np.random.default_rng(0)
    yaw = {name: float(rng.uniform(-60, 60)) for name in names}
    lines = [f"{name}\t{yaw[name]:.2f}\t0\t0" + "\t50" * 10 for name in names[:-1]]  # the last has no pose
    (tmp_path / POSE_FILE).write_text("\n".join(lines) + "\n")
    pairs = [
        (names[i], names[j], int(names[i].split("/")[0] == names[j].split("/")[0]))
        for i, j in rng.integers(0, 24, (80, 2))
        if i != j
    ]
    (tmp_path / "pairs.csv").write_text("".join(f"{a},{b},{s}\n" for a, b, s in pairs))

    pipeline = RecognitionPipeline.load("fast", detector="none", flip=False, device="cpu")
    report = build_protocol("pairs", {"csv": tmp_path / "pairs.csv"}).evaluate(pipeline, tmp_path / "out")
    section = report["pose"]
    assert section["pose_file"] == str(tmp_path / POSE_FILE) and section["images_with_pose"] == 23
    without = sum(names[-1] in (a, b) for a, b, _ in pairs)
    assert section["no_flip"]["pairs_without_pose"] == without
    diffs = [abs(round(yaw[a], 2) - round(yaw[b], 2)) for a, b, _ in pairs if names[-1] not in (a, b)]
    counts = [row["genuine"] + row["impostor"] for row in section["no_flip"]["buckets"]]
    assert counts == [sum(lo <= d < hi for d in diffs) for lo, hi in zip(EDGES, [*EDGES[1:], math.inf], strict=True)]
    assert (tmp_path / "out" / "yaw_difference.png").is_file()
    # the same breakdown when the file is given explicitly from elsewhere
    moved = tmp_path / "elsewhere.tsv"
    moved.write_text((tmp_path / POSE_FILE).read_text())
    (tmp_path / POSE_FILE).unlink()
    assert "pose" not in build_protocol("pairs", {"csv": tmp_path / "pairs.csv"}).evaluate(pipeline)
    again = build_protocol("pairs", {"csv": tmp_path / "pairs.csv", "pose": moved}).evaluate(pipeline)
    assert again["pose"]["no_flip"]["buckets"] == section["no_flip"]["buckets"]
