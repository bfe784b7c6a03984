"""CACD-VS pairs and FG-NET leave-one-out identification, on sets written here; rank-1, CMC and
the age breakdowns against brute-force loops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerec.cli import main
from facerec.data.synthetic import SyntheticFaces
from facerec.errors import DataError
from facerec.eval.cross_age import cacd_vs_pairs, fgnet_metrics, leave_one_out_ranks, nearest_mate_gap
from facerec.eval.protocols import build_protocol


def touch_cacd(root: Path, pairs: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(pairs):
        for side in (0, 1):
            (root / f"{i:04d}_{side}.jpg").touch()
    return root


def test_cacd_vs_layout(tmp_path):
    pairs = cacd_vs_pairs(touch_cacd(tmp_path, 40), pairs=40, folds=10)  # 4 pairs a fold: 2 same, 2 not
    for i in range(40):
        assert pairs.names[pairs.left[i]] == f"{i:04d}_0.jpg" and pairs.names[pairs.right[i]] == f"{i:04d}_1.jpg"
        assert pairs.fold[i] == i // 4 and pairs.same[i] == (i % 4 < 2)


def test_cacd_vs_protocol_folds(tmp_path):
    root = touch_cacd(tmp_path / "cacd", 4000)
    full = build_protocol("cacd_vs", {"root": root})
    assert len(full.pairs) == 4000 and full.pairs.same.sum() == 2000
    assert np.bincount(full.pairs.fold).tolist() == [400] * 10
    assert full.pairs.same[:200].all() and not full.pairs.same[200:400].any() and full.pairs.same[400:600].all()
    fold3 = build_protocol("cacd_vs", {"root": root, "folds": [3]}).pairs
    assert len(fold3) == 400 and fold3.same.sum() == 200 and fold3.names[fold3.left[0]] == "1200_0.jpg"


def test_cacd_vs_missing_files(tmp_path):
    root = touch_cacd(tmp_path, 40)
    (root / "0007_1.jpg").unlink()
    (root / "0002_0.jpg").unlink()
    with pytest.raises(DataError, match=r"2 of the 80 CACD-VS images are missing \(first: 0002_0.jpg, 0007_1.jpg\)"):
        cacd_vs_pairs(root, pairs=40)
    with pytest.raises(DataError, match="CACD-VS folder not found"):
        cacd_vs_pairs(tmp_path / "nope")


def brute_force(emb: np.ndarray, persons: np.ndarray, ages: np.ndarray, max_rank: int = 10):
    """Per probe, loop over every other image: best score per person, rank of the own person,
    and the years to the nearest-age other image of the same person."""
    ranks, gaps = [], []
    for p in range(len(emb)):
        best: dict[int, float] = {}
        for g in range(len(emb)):
            if g != p:
                s = float(np.dot(emb[p], emb[g]))
                best[persons[g]] = max(best.get(persons[g], -np.inf), s)
        own = best[persons[p]]
        ranks.append(sum(1 for s in best.values() if s >= own))
        gaps.append(min(abs(ages[p] - ages[g]) for g in range(len(emb)) if g != p and persons[g] == persons[p]))
    ranks = np.array(ranks)
    return ranks, np.array(gaps), [float(np.mean(ranks <= k)) for k in range(1, max_rank + 1)]


def test_fgnet_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    persons = np.repeat(np.arange(12), 6)
    ages = rng.integers(0, 60, len(persons))
    centers = rng.normal(size=(12, 16))
    emb = centers[persons] + 1.2 * rng.normal(size=(len(persons), 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ranks, gaps, curve = brute_force(emb, persons, ages)
    assert np.array_equal(leave_one_out_ranks(emb, persons), ranks)
    assert np.array_equal(nearest_mate_gap(persons, ages), gaps)
    m = fgnet_metrics(emb, persons, ages)
    assert 0.2 < m["rank1"] < 0.95  # neither trivial nor hopeless, so the breakdowns mean something
    assert np.allclose(m["cmc"], curve) and m["rank1"] == curve[0] and m["rank10"] == curve[9]
    buckets = {"0-5": (0, 5), "6-10": (6, 10), "11-20": (11, 20), ">20": (21, 999)}
    for name, (low, high) in buckets.items():
        inside = [r == 1 for r, g in zip(ranks, gaps, strict=True) if low <= g <= high]
        assert m["by_age_gap"][name]["probes"] == len(inside)
        assert m["by_age_gap"][name]["rank1"] == (pytest.approx(np.mean(inside)) if inside else None)
    child = [r == 1 for r, a in zip(ranks, ages, strict=True) if a < 13]
    adult = [r == 1 for r, a in zip(ranks, ages, strict=True) if a >= 20]
    assert m["by_probe_age"]["child (<13)"]["rank1"] == pytest.approx(np.mean(child))
    assert m["by_probe_age"]["adult (20+)"]["rank1"] == pytest.approx(np.mean(adult))
    total = sum(cell["probes"] for cell in m["by_probe_age"].values())
    assert total == len(persons) == sum(cell["probes"] for cell in m["by_age_gap"].values())


def test_fgnet_person_with_one_image():
    emb = np.eye(3)
    with pytest.raises(DataError, match="two images of every person"):
        leave_one_out_ranks(emb, np.array([0, 0, 1]))


@pytest.fixture(scope="module")
def fgnet_dir(tmp_path_factory) -> Path:
    """4 people x 3 images named as FG-NET names them (mixed case, a/b suffixes), plus a stray file."""
    root = tmp_path_factory.mktemp("fgnet") / "images"
    root.mkdir()
    faces = SyntheticFaces(4, 3, size=112, seed=3)
    names = ["001A02.JPG", "001A15a.JPG", "001a15B.jpg", "002A30.JPG", "002A31.JPG", "002A52.JPG"]
    names += ["003A05.JPG", "003A12.JPG", "003A19.JPG", "004A00.JPG", "004A40.JPG", "004A41.png"]
    for i, name in enumerate(names):  # SyntheticFaces orders images by identity, 3 each
        Image.fromarray(faces.render(i)).save(root / name)
    Image.fromarray(faces.render(0)).save(root / "notes.jpg")
    return root.parent


def test_eval_fgnet_command(fgnet_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["eval", "fgnet", str(fgnet_dir), "--model", "fast", "--detector", "none", "--out", str(out)]
    assert main([*args, "--device", "cpu", "--runtime", "torch"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 12 and report["persons"] == 4 and report["ignored_files"] == ["notes.jpg"]
    assert (out / "fgnet.png").stat().st_size > 0
    saved = np.load(out / "embeddings.npz")
    persons = np.array([int(n[:3]) for n in saved["names"]])
    ages = np.array([int(n[4:6]) for n in saved["names"]])
    for key, column in (("no_flip", "plain"), ("flip", "flipped")):
        _, _, curve = brute_force(saved[column].astype(np.float64), persons, ages, max_rank=4)
        assert report[key]["rank1"] == pytest.approx(curve[0]) and np.allclose(report[key]["cmc"], curve)
    assert "rank-1" in capsys.readouterr().out


def test_eval_fgnet_errors(tmp_path, capsys):
    (tmp_path / "x.jpg").touch()
    assert main(["eval", "fgnet", str(tmp_path), "--model", "fast", "--detector", "none"]) == 2
    assert "no FG-NET images" in capsys.readouterr().err


def test_benchmark_runs_fgnet(fgnet_dir, tmp_path):
    """From `facerec benchmark --protocols FILE`: one pass gives the rows of both flip settings,
    equal to the protocol's own report (cacd_vs runs there as any PairProtocol does)."""
    (tmp_path / "p.json").write_text(json.dumps([{"name": "fgnet", "options": {"root": str(fgnet_dir)}}]))
    out = tmp_path / "bench"
    argv = ["benchmark", "fast", "--protocols", str(tmp_path / "p.json"), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--runtime", "torch"]) == 0
    table = json.loads((out / "benchmark.json").read_text())
    rows = {(r["protocol"], r["flip"]): r["summary"] for r in table["rows"]}
    report = json.loads((out / "00_fgnet" / "report.json").read_text())
    assert set(rows) == {("fgnet", True), ("fgnet", False)}
    assert rows[("fgnet", True)]["rank1"] == report["flip"]["rank1"]
    assert rows[("fgnet", False)]["rank5"] == report["no_flip"]["rank5"]
