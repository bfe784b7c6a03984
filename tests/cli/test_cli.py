"""The command line: clear errors (exit code 2, no traceback) and the embed/synth commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny
from facerec.cli import main


def test_unknown_config_key_is_a_clear_error(capsys):
    assert main(["train", "quickstart", "--set", "train.epochz=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.epochz'" in err and "Traceback" not in err


def test_missing_dataset_folder_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "iresnet50_arcface", "--set", f"data.root={tmp_path}/nope", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_empty_dataset_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "faces").mkdir()
    code = main(["train", "iresnet50_arcface", "--set", f"data.root={tmp_path}/faces"])
    assert code == 2
    assert "no images in" in capsys.readouterr().err


def test_single_image_identities_under_metric_loss(tmp_path, capsys):
    main(["synth", str(tmp_path / "faces"), "--identities", "6", "--images", "1", "--size", "16"])
    code = main(
        [
            "train",
            "triplet_pk",
            "--set",
            "data.source=folder",
            "--set",
            f"data.root={tmp_path}/faces",
            "--set",
            "data.val_identities=0",
            "--output-dir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    assert "single image" in capsys.readouterr().err


def test_synth_then_embed(tmp_path, capsys):
    from facerec.train import Trainer

    Trainer(tiny(tmp_path / "run", "train.epochs=1")).fit()
    assert main(["synth", str(tmp_path / "faces"), "--identities", "3", "--images", "2", "--size", "24"]) == 0
    out = tmp_path / "emb.npy"
    assert (
        main(
            [
                "embed",
                str(tmp_path / "faces"),
                "--model",
                str(tmp_path / "run" / "model.pt"),
                "--out",
                str(out),
                "--flip",
            ]
        )
        == 0
    )
    emb = np.load(out)
    assert emb.shape == (6, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert len(json.loads(out.with_suffix(".json").read_text())) == 6


def test_embed_missing_model_or_image(tmp_path, capsys):
    assert main(["embed", str(tmp_path / "x.jpg"), "--model", str(tmp_path / "none.pt")]) == 2
    assert "model file not found" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["configs"], ["components"]])
def test_listing_commands(cmd, capsys):
    assert main(cmd) == 0
    out = capsys.readouterr().out
    assert "quickstart" in out or "arcface" in out
