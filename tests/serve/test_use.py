"""verify / enroll / identify: the recognizer over a gallery store with tiny models on synthetic
crops, and the commands on real LFW faces."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import LFW, needs_dlib, needs_lfw, needs_mtcnn
from facerec.cli import main
from facerec.models import build_backbone
from facerec.models.card import ThresholdRecord
from facerec.models.io import export_model
from facerec.serve.recognizer import FaceRecognizer
from facerec.serve.store import KEY_ENV, ModelMismatch, open_store

CFG = {"name": "lowres_irse8", "embedding_size": 8, "input_size": 16, "options": {"widths": [4, 8, 8, 8]}}


def tiny_model(path, seed: int, threshold: float | None = None) -> str:
    """An untrained 16 px model file; with `threshold`, its card has one for pre-aligned crops."""
    torch.manual_seed(seed)
    net = build_backbone(CFG["name"], CFG["embedding_size"], CFG["input_size"], CFG["options"])
    records = [ThresholdRecord(threshold, "none", True, "test")] if threshold is not None else []
    return str(export_model(path, net, CFG, thresholds=records))


@pytest.fixture
def plain_store(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with open_store(tmp_path / "store.db", plaintext=True) as store:
        yield store


def test_enroll_a_tree_then_identify_its_people(tmp_path, tree, plain_store):
    rec = FaceRecognizer(tiny_model(tmp_path / "a" / "model.pt", 0), "none", threshold=0.5, device="cpu")
    report = rec.enroll_tree(plain_store, "g", tree)
    assert report.added == 12 and not report.skipped
    gallery = plain_store.gallery("g")
    assert gallery.pipeline["detector"] == "none" and gallery.dimension == 8
    assert plain_store.counts("g").subjects == 4
    person = sorted(p for p in tree.iterdir() if p.is_dir())[1]
    found = rec.identify(plain_store, "g", sorted(person.iterdir())[0], top=3)
    assert found.name == person.name and found.score == pytest.approx(1.0, abs=1e-5)
    assert len(found.matches) == 3 and found.matches[0].subject == person.name


def test_a_gallery_of_one_model_refuses_another(tmp_path, tree, plain_store):
    a = FaceRecognizer(tiny_model(tmp_path / "run_a" / "model.pt", 0), "none", threshold=0.5, device="cpu")
    b = FaceRecognizer(tiny_model(tmp_path / "run_b" / "model.pt", 1), "none", threshold=0.5, device="cpu")
    a.enroll_tree(plain_store, "g", tree)
    assert a.open_gallery(plain_store, "g").digest == a.pipeline.model.digest  # its own model: fine
    refused = r"holds embeddings of model 'run_a' \(digest [0-9a-f]{12}\), not of 'run_b' \(digest [0-9a-f]{12}\)"
    with pytest.raises(ModelMismatch, match=refused):
        b.enroll_tree(plain_store, "g", tree)
    with pytest.raises(ModelMismatch, match=refused):
        b.identify(plain_store, "g", next(tree.rglob("*.png")))
    assert plain_store.counts("g").faces == 12


def test_the_gallery_threshold_stands_between_the_card_and_the_caller(tmp_path, tree, plain_store):
    model = tiny_model(tmp_path / "m" / "model.pt", 0, threshold=0.3)
    card = FaceRecognizer(model, "none", device="cpu")
    card.enroll_tree(plain_store, "g", tree)
    assert card.threshold_for(plain_store.gallery("g")) == 0.3
    plain_store.set_threshold("g", 0.9)
    assert card.threshold_for(plain_store.gallery("g")) == 0.9
    given = FaceRecognizer(model, "none", threshold=0.5, device="cpu")
    assert given.threshold_for(plain_store.gallery("g")) == 0.5


def test_enroll_and_identify_commands_on_a_store(tmp_path, tree, capsys, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    model = tiny_model(tmp_path / "m" / "model.pt", 0, threshold=0.5)
    store = str(tmp_path / "data" / "gallery.db")
    use = ["--model", model, "--detector", "none", "--device", "cpu", "--gallery", store]
    assert main(["enroll", str(tree), *use]) == 2
    assert "no key for the new gallery store" in capsys.readouterr().err
    assert main(["enroll", str(tree), *use, "--plaintext", "--gallery-name", "team"]) == 0
    assert "enrolled 12 images (4 people in gallery 'team'" in capsys.readouterr().out
    probe = sorted(next(p for p in sorted(tree.iterdir()) if p.is_dir()).iterdir())[0]
    assert main(["identify", str(probe), *use, "--gallery-name", "team"]) == 0
    assert capsys.readouterr().out.startswith(probe.parent.name)
    assert main(["identify", str(probe), *use]) == 2
    assert "no gallery 'default'" in capsys.readouterr().err


def lfw(name: str, number: int) -> str:
    return str(LFW / "images" / name / f"{name}_{number:04d}.jpg")


# The people below are from LFW View 2 people fold 9, which the default model never saw.
@needs_lfw
@needs_mtcnn
@pytest.mark.parametrize("model", ["fast", pytest.param("default", marks=needs_dlib)])
def test_verify_command(tmp_path, capsys, model):
    assert main(["verify", lfw("George_W_Bush", 1), lfw("George_W_Bush", 2), "--model", model]) == 0
    assert "same person" in capsys.readouterr().out
    assert main(["verify", lfw("George_W_Bush", 1), lfw("Jennifer_Lopez", 1), "--model", model]) == 1
    assert "different people" in capsys.readouterr().out
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 120, 3), 128, dtype=np.uint8)).save(blank)
    assert main(["verify", lfw("George_W_Bush", 1), str(blank), "--model", model]) == 2
    err = capsys.readouterr().err
    assert "no face detected in" in err and "blank.png" in err


@needs_lfw
@needs_mtcnn
@needs_dlib  # the default model is the reference model (the most accurate measured)
def test_enroll_then_identify_with_the_default_model(tmp_path, capsys):
    people = {"Ariel_Sharon": (1, 2), "Jennifer_Lopez": (1, 2), "Bill_Clinton": (1, 2)}
    for name, numbers in people.items():
        (tmp_path / "people" / name).mkdir(parents=True)
        for n in numbers:
            shutil.copy(lfw(name, n), tmp_path / "people" / name)
    key = tmp_path / "store.key"
    assert main(["gallery", "key", str(key)]) == 0
    store = ["--gallery", str(tmp_path / "gallery.db"), "--key-file", str(key)]
    assert main(["enroll", str(tmp_path / "people"), *store]) == 0
    assert "enrolled 6 images (3 people" in capsys.readouterr().out
    assert main(["identify", lfw("Bill_Clinton", 5), *store]) == 0
    assert capsys.readouterr().out.startswith("Bill_Clinton")
    assert main(["identify", lfw("John_Bolton", 1), *store]) == 1
    assert capsys.readouterr().out.startswith("unknown")


@pytest.mark.slow
@needs_lfw
@needs_mtcnn
@needs_dlib
def test_lfw_fold_accuracy_end_to_end(tmp_path, capsys):
    """The whole chain on one official LFW View 2 fold (600 pairs, about 1,150 images)."""
    import json

    code = main(
        [
            "eval",
            "lfw",
            "--root",
            str(LFW),
            "--folds",
            "0",
            "--model",
            "dlib",
            "--detector",
            "mtcnn",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["no_flip"]["pairs"] == 600
    assert report["flip"]["kfold_accuracy"] >= 0.97
    assert (tmp_path / "roc.png").is_file() and (tmp_path / "histogram_flip.png").is_file()
