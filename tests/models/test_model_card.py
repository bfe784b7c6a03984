"""Model files describe themselves: the card, the content digest, named models, old files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerec.errors import FacerecError
from facerec.models import build_backbone
from facerec.models.card import ThresholdRecord, content_digest
from facerec.models.io import export_model, load_recognition_model, read_model_file
from facerec.models.named import DEFAULT_MODEL_FILE
from facerec.pipeline import RecognitionPipeline

CFG = {"name": "lowres_irse8", "embedding_size": 8, "input_size": 16, "options": {"widths": [4, 8, 8, 8]}}


def backbone(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone(CFG["name"], CFG["embedding_size"], CFG["input_size"], CFG["options"])


def test_two_runs_get_different_identities_and_one_run_keeps_its_own(tmp_path):
    a = export_model(tmp_path / "run_a" / "model.pt", backbone(0), CFG)
    b = export_model(tmp_path / "run_b" / "model.pt", backbone(1), CFG)
    again = export_model(tmp_path / "copy" / "model.pt", backbone(0), CFG)
    card_a, card_b = read_model_file(a).card, read_model_file(b).card
    assert card_a.digest != card_b.digest
    assert read_model_file(again).card.digest == card_a.digest  # identity is content, not the file name
    assert card_a.name == "run_a" and card_a.input_size == 16 and card_a.embedding_size == 8
    # the digest covers every weight: one changed entry changes it
    state = backbone(0).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] += 1e-6
    assert content_digest({"x": 1}, state) != content_digest({"x": 1}, backbone(0).state_dict())


def test_the_card_carries_the_crop_geometry_and_thresholds_by_pipeline(tmp_path):
    records = [
        ThresholdRecord(0.3, "none", True, "held-out identities"),
        ThresholdRecord(0.4, "mtcnn", True, "LFW"),
        ThresholdRecord(0.5, "mtcnn", False, "LFW"),
    ]
    path = export_model(tmp_path / "r" / "model.pt", backbone(0), CFG, thresholds=records)
    model = load_recognition_model(path)
    assert np.allclose(model.template[0], [38.2946 * 16 / 112, 51.6963 * 16 / 112])
    assert model.card.normalization == {"channels": "RGB", "mean": 127.5, "std": 127.5}
    assert model.card.threshold_for("mtcnn", True).value == 0.4
    assert model.card.threshold_for("mtcnn", False).value == 0.5
    assert model.card.threshold_for("dlib", True).value == 0.4  # same flip setting, newest record
    assert model.card.threshold_for("none", True).value == 0.3
    assert RecognitionPipeline(model, "none", flip=False).threshold().value == 0.5


def test_model_files_without_a_card_still_load(tmp_path):
    net = backbone(0)
    legacy = {
        "format": "facerec-model",
        "version": 1,
        "model": {k: v for k, v in CFG.items() if k != "input_size"},
        "image_size": 16,
        "state_dict": net.state_dict(),
        "threshold": 0.42,
    }
    torch.save(legacy, tmp_path / "old.pt")
    model = load_recognition_model(tmp_path / "old.pt")
    assert model.input_size == 16 and model.card.threshold_for("mtcnn", True).value == 0.42
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(model.net(x), net.eval()(x))


def test_the_shipped_resnet128_is_dlibs_network_on_dlibs_framing_in_half_precision():
    from facerec.core.geometry import DLIB_150
    from facerec.models.named import RESNET128_FILE

    model = load_recognition_model("resnet128")
    assert model.name == "resnet128" and model.card.architecture == "dlib_resnet" and model.input_size == 128
    assert model.card.template_name == "dlib_150@128" and np.allclose(model.template, DLIB_150 * 128 / 150)
    stored = read_model_file(RESNET128_FILE).backbone
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert RESNET128_FILE.stat().st_size < 12e6
    record = model.card.threshold_for("mtcnn", True)
    assert record is not None and 0 < record.value < 1
    with torch.no_grad():
        out = model.net(torch.rand(2, 3, 128, 128) * 2 - 1)
    assert out.shape == (2, 128) and out.dtype == torch.float32


def test_named_models_and_clear_errors(tmp_path):
    model = load_recognition_model("fast")
    assert model.name == "fast" and DEFAULT_MODEL_FILE.stat().st_size < 8e6
    record = model.card.threshold_for("mtcnn", True)
    assert record is not None and 0 < record.value < 1 and record.detector == "mtcnn"
    assert model.net(torch.rand(2, 3, model.input_size, model.input_size)).shape == (2, 128)
    with pytest.raises(FacerecError, match=r"unknown named model 'defualt'.*Did you mean 'default'"):
        load_recognition_model("defualt")
    with pytest.raises(FacerecError, match="model file not found"):
        load_recognition_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(FacerecError, match="cannot read model file"):
        load_recognition_model(tmp_path / "junk.pt")
