"""verify / enroll / identify: the gallery on its own, and the commands on real LFW faces."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import LFW, needs_dlib, needs_lfw, needs_mtcnn
from facerec.cli import main
from facerec.errors import FacerecError
from facerec.serve.gallery import Gallery


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_gallery_search_ranks_people_by_their_best_image(tmp_path):
    g = Gallery("m")
    g.add("ann", unit([1, 0, 0]), "a1")
    g.add("ann", unit([0, 1, 0]), "a2")
    g.add("bob", unit([1, 1, 0]), "b1")
    results = g.search(unit([0.1, 1, 0]), top=2)
    assert [name for name, _ in results] == ["ann", "bob"]
    assert results[0][1] == pytest.approx(float(unit([0.1, 1, 0]) @ unit([0, 1, 0])), rel=1e-6)
    g.save(tmp_path / "g.npz")
    loaded = Gallery.load(tmp_path / "g.npz")
    assert loaded.names == g.names and np.array_equal(loaded.embeddings, g.embeddings)
    with pytest.raises(FacerecError, match="embedding size 2 differs"):
        g.add("cy", unit([1, 0]), "c")


def test_empty_or_missing_gallery():
    with pytest.raises(FacerecError, match="the gallery is empty"):
        Gallery("m").search(unit([1, 0]))
    with pytest.raises(FacerecError, match="gallery not found"):
        Gallery.load("no/such/gallery.npz")


def lfw(name: str, number: int) -> str:
    return str(LFW / "images" / name / f"{name}_{number:04d}.jpg")


# The people below are from LFW View 2 people fold 9, which the default model never saw.
@needs_lfw
@needs_mtcnn
@pytest.mark.parametrize("model", ["default", pytest.param("dlib", marks=needs_dlib)])
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
def test_enroll_then_identify_with_the_default_model(tmp_path, capsys):
    people = {"Ariel_Sharon": (1, 2), "Jennifer_Lopez": (1, 2), "Bill_Clinton": (1, 2)}
    for name, numbers in people.items():
        (tmp_path / "people" / name).mkdir(parents=True)
        for n in numbers:
            shutil.copy(lfw(name, n), tmp_path / "people" / name)
    gallery = str(tmp_path / "g.npz")
    assert main(["enroll", str(tmp_path / "people"), "--gallery", gallery]) == 0
    assert "enrolled 6 images (3 people" in capsys.readouterr().out
    assert main(["identify", lfw("Bill_Clinton", 5), "--gallery", gallery]) == 0
    assert capsys.readouterr().out.startswith("Bill_Clinton")
    assert main(["identify", lfw("John_Bolton", 1), "--gallery", gallery]) == 1
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
