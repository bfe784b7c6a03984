"""`facerec enroll --keep-crops` and `facerec gallery migrate` end to end, with two tiny untrained
model files on synthetic pre-aligned faces."""

from __future__ import annotations

import numpy as np
import torch

from facerec.cli import main
from facerec.data import SyntheticFaces
from facerec.models import build_backbone
from facerec.models.card import ThresholdRecord
from facerec.models.io import export_model
from facerec.pipeline import RecognitionPipeline
from facerec.serve.store import KEY_ENV, open_store

CFG = {"name": "lowres_irse8", "embedding_size": 8, "input_size": 16, "options": {"widths": [4, 8, 8, 8]}}


def tiny_model(path, seed: int) -> str:
    """An untrained 16 px model file whose card has a threshold for pre-aligned crops."""
    torch.manual_seed(seed)
    net = build_backbone(CFG["name"], CFG["embedding_size"], CFG["input_size"], CFG["options"])
    return str(export_model(path, net, CFG, thresholds=[ThresholdRecord(0.5, "none", True, "test")]))


def test_enroll_keeping_crops_then_migrate_by_crops_or_by_a_map(tmp_path, tree, capsys, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    old, new = tiny_model(tmp_path / "old.pt", 1), tiny_model(tmp_path / "new.pt", 2)
    store = ["--gallery", str(tmp_path / "store.db"), "--plaintext", "--runtime", "torch"]
    use = ["--model", old, "--detector", "none", *store]
    assert main(["enroll", str(tree), *use, "--gallery-name", "kept", "--keep-crops"]) == 0
    assert main(["enroll", str(tree), *use, "--gallery-name", "plain"]) == 0
    assert main(["enroll", str(tree), *use, "--gallery-name", "plain", "--keep-crops"]) == 2
    assert "created without keeping crops" in capsys.readouterr().err

    assert main(["gallery", "migrate", "plain", "--to", new, *store]) == 2
    assert "12 faces of gallery 'plain' have no kept crop: give a calibration set" in capsys.readouterr().err

    assert main(["gallery", "migrate", "kept", "--to", new, "--as", "kept-new", *store]) == 0
    assert "12 faces embedded again from their kept crops, 0 mapped" in capsys.readouterr().out

    calibration = SyntheticFaces(5, 3, size=40, first_identity=100).write_tree(tmp_path / "cal", progress=False)
    migrate = ["gallery", "migrate", "plain", "--to", new, "--calibration", str(calibration), "--from-model", old]
    assert main([*migrate, *store]) == 0
    out = capsys.readouterr().out
    assert "0 faces embedded again from their kept crops, 12 mapped from 'plain'" in out
    assert "map: 15 calibration faces" in out and "gallery 'plain' is unchanged" in out

    assert main(["gallery", "list", *store[:3]]) == 0
    listed = capsys.readouterr().out
    assert "kept: 4 people, 12 faces" in listed and "keeps crops" in listed
    assert "migrated from 'kept' of model" in listed and "(12 faces embedded again, 0 mapped)" in listed
    assert "(0 faces embedded again, 12 mapped, map loss" in listed and "on 15 faces)" in listed

    pipeline = RecognitionPipeline.load(new, detector="none", flip=True, device="cpu")
    with open_store(tmp_path / "store.db", plaintext=True) as opened:
        kept = opened.gallery("kept-new")
        assert kept.digest == pipeline.model.digest and kept.migration["re_embedded"] == 12
        faces = opened.faces("kept-new")
        crops = opened.crops("kept-new", [f.id for f in faces])
        expected = pipeline.embed_kept(crops, progress=False)
        assert np.allclose(opened.vectors("kept-new", [f.id for f in faces]), expected, atol=1e-5)
        mapped = next(g for g in opened.galleries() if g.name.startswith("plain-"))
        assert mapped.migration["mapped"] == 12 and mapped.migration["map"]["calibration"] == 15
        assert mapped.migration["map"]["calibration_source"] == str(calibration)
