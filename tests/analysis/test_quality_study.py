"""`facerec analyze quality` end to end on a small LFW-shaped folder of synthetic faces with a
tiny untrained model: the report's curves and areas equal a recomputation from its own per-image
qualities and freshly computed embeddings; the enrolment gate of the use commands."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from facerec.cli import main
from facerec.data import SyntheticFaces
from facerec.errors import FacerecError
from facerec.eval.quality import fmr_threshold
from facerec.models import build_backbone
from facerec.models.card import ThresholdRecord
from facerec.models.io import export_model
from facerec.pipeline import RecognitionPipeline
from facerec.serve.recognizer import FaceRecognizer
from facerec.serve.store import KEY_ENV, open_store

CFG = {"name": "lowres_irse8", "embedding_size": 8, "input_size": 16, "options": {"widths": [4, 8, 8, 8]}}
PEOPLE, IMAGES, FOLDS, PER_FOLD = 8, 4, 2, 6


def tiny_model(path, seed: int = 0) -> str:
    torch.manual_seed(seed)
    net = build_backbone(CFG["name"], CFG["embedding_size"], CFG["input_size"], CFG["options"])
    return str(export_model(path, net, CFG, thresholds=[ThresholdRecord(0.5, "none", True, "test")]))


@pytest.fixture(scope="module")
def lfw_like(tmp_path_factory):
    """images/<Name>/<Name>_NNNN.jpg and meta/pairs.txt: two folds of 6 matched + 6 mismatched
    pairs, people of fold 0 and fold 1 apart, as in LFW View 2."""
    root = tmp_path_factory.mktemp("lfw_like")
    faces = SyntheticFaces(PEOPLE, IMAGES, size=40)
    for index in range(len(faces)):
        name = f"Person_{faces.label(index):02d}"
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
        path = root / "images" / name / f"{name}_{index % IMAGES + 1:04d}.jpg"
        Image.fromarray(faces.render(index)).save(path, quality=95)
    rng = np.random.default_rng(0)
    lines = [f"{FOLDS} {PER_FOLD}"]
    for fold in range(FOLDS):
        people = [f"Person_{k:02d}" for k in range(fold * PEOPLE // 2, (fold + 1) * PEOPLE // 2)]
        for _ in range(PER_FOLD):
            a, b = rng.choice(IMAGES, 2, replace=False) + 1
            lines.append(f"{rng.choice(people)} {a} {b}")
        for _ in range(PER_FOLD):
            p, q = rng.choice(people, 2, replace=False)
            lines.append(f"{p} {rng.integers(1, IMAGES + 1)} {q} {rng.integers(1, IMAGES + 1)}")
    (root / "meta").mkdir()
    (root / "meta" / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def edc_area(genuine, quality, threshold, max_discard):
    """Brute force: sort by (quality, position), one k at a time, trapezoids."""
    order = sorted(range(len(genuine)), key=lambda i: (quality[i], i))
    points = []
    for k in range(int(max_discard * len(genuine) + 1e-9) + 1):
        kept = order[k:]
        points.append((k / len(genuine), sum(genuine[i] < threshold for i in kept) / len(kept)))
    return sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in itertools.pairwise(points))


def test_analyze_quality_report_matches_a_recomputation(lfw_like, tmp_path, capsys):
    model = tiny_model(tmp_path / "m" / "model.pt")
    out = tmp_path / "out"
    args = ["analyze", "quality", "--lfw", str(lfw_like), "--model", model, "--detector", "none", "--out", str(out)]
    args += ["--baseline-detector", "none", "--fmr", "0.2", "--repeats", "9", "--cache", str(tmp_path / "cache")]
    args += ["--option", "stability.count=3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "FMR 0.2: threshold" in printed and "stability: area" in printed
    report = json.loads((out / "report.json").read_text())
    assert (out / "edc.png").stat().st_size > 0
    assert report["pairs"] == FOLDS * 2 * PER_FOLD
    assert report["options"] == {"stability": {"count": 3}, "feature_norm": {}}
    assert report["settings"]["stability"]["count"] == 3 and report["settings"]["stability"]["shift"] == 1.5
    # recompute: the pairs, fresh embeddings, the report's per-image qualities
    stored = np.load(out / "qualities.npz")
    names = [str(n) for n in stored["names"]]
    lines = (lfw_like / "meta" / "pairs.txt").read_text().split("\n")[1:-1]
    index = {name: i for i, name in enumerate(names)}

    def image(name, number):
        return index[str(lfw_like / "images" / name / f"{name}_{int(number):04d}.jpg")]

    pairs = [
        (image(p[0], p[1]), image(p[0], p[2]), True) if len(p) == 3 else (image(*p[:2]), image(*p[2:]), False)
        for p in (line.split() for line in lines)
    ]
    pipeline = RecognitionPipeline.load(model, detector="none", device="cpu")
    emb = pipeline.embed(names, progress=False).flipped
    scores = np.array([float(emb[a] @ emb[b]) for a, b, _ in pairs])
    same = np.array([s for _, _, s in pairs])
    edc = report["edc"]["0.2"]
    threshold = fmr_threshold(scores[~same], 0.2)
    assert edc["threshold"] == pytest.approx(threshold, abs=1e-6)
    for name in ("stability", "feature_norm"):
        q = stored[name]
        paired = np.array([min(q[a], q[b]) for a, b, s in pairs if s])
        expected = edc_area(scores[same], paired, threshold, 0.5)
        assert edc["scorers"][name]["area"] == pytest.approx(expected, abs=1e-9)
    assert stored["feature_norm"].min() >= 0.0 and stored["feature_norm"].max() == pytest.approx(1.0)
    # a second run takes everything from the per-image cache and says the same
    assert main(args) == 0
    assert json.loads((out / "report.json").read_text())["edc"] == report["edc"]


def test_analyze_quality_refuses_an_incomplete_aligned_tree(lfw_like, tmp_path, capsys):
    aligned = tmp_path / "aligned"
    (aligned / "Person_00").mkdir(parents=True)
    args = ["analyze", "quality", "--lfw", str(lfw_like), "--aligned", str(aligned), "--out", str(tmp_path / "o")]
    assert main([*args, "--model", tiny_model(tmp_path / "m" / "model.pt"), "--no-cache"]) == 2
    assert "have no aligned crop under" in capsys.readouterr().err


# ---- the enrolment gate of the use commands ---------------------------------------------------
@pytest.fixture
def plain_store(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with open_store(tmp_path / "store.db", plaintext=True) as store:
        yield store


def test_recognizer_gate_skips_faces_below_min_quality(tmp_path, tree, plain_store):
    rec = FaceRecognizer(tiny_model(tmp_path / "a" / "model.pt"), "none", threshold=0.5, device="cpu")
    images = sorted(tree.rglob("*.png"))
    qualities = {str(p): rec.assess(p)[1] for p in images}
    gate = float(np.median(list(qualities.values())))
    report = rec.enroll_tree(plain_store, "g", tree, min_quality=gate)
    kept = [p for p, q in qualities.items() if q >= gate]
    assert report.added == len(kept) and len(report.skipped) == len(images) - len(kept) > 0
    assert all(f"is below --min-quality {gate:g}" in line for line in report.skipped)
    enrolled = [face.metadata for person in plain_store.subjects("g") for face in plain_store.faces("g", person.name)]
    assert sorted(m["source"] for m in enrolled) == sorted(kept)
    assert all(m["quality"] == pytest.approx(qualities[m["source"]], abs=1e-4) for m in enrolled)
    with pytest.raises(FacerecError, match=r"nothing enrolled .* of quality >= 1"):
        rec.enroll_tree(plain_store, "g2", tree, min_quality=1.0)
    with pytest.raises(FacerecError, match=r"min_quality is a quality score in \[0, 1\]"):
        rec.enroll_tree(plain_store, "g", tree, min_quality=1.5)


def test_enroll_and_identify_commands_refuse_low_quality_faces(tmp_path, tree, capsys, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    model = tiny_model(tmp_path / "m" / "model.pt")
    use = ["--model", model, "--detector", "none", "--device", "cpu", "--plaintext"]
    use += ["--gallery", str(tmp_path / "g.db")]
    assert main(["enroll", str(tree), *use, "--min-quality", "1"]) == 2
    err = capsys.readouterr().err
    assert "is below --min-quality 1" in err and "nothing enrolled" in err and "Traceback" not in err
    assert main(["enroll", str(tree), *use, "--min-quality", "0"]) == 0
    assert "enrolled 12 images" in capsys.readouterr().out
    probe = str(sorted(tree.rglob("*.png"))[0])
    assert main(["identify", probe, *use, "--min-quality", "1"]) == 2
    assert "face quality" in capsys.readouterr().err
    assert main(["identify", probe, *use, "--min-quality", "0"]) == 0
    assert main(["enroll", str(tree), *use, "--quality", "stabilty"]) == 2
    assert "Did you mean 'stability'" in capsys.readouterr().err
