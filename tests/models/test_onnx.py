"""ONNX export and the onnxruntime path: the exported graph computes what the torch network
computes (synthetic input at several batch sizes; 100 real aligned LFW faces through the shipped
model), the card travels in the file, and the command line runs on either runtime."""

from __future__ import annotations

import json
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import LFW, needs_dlib, needs_lfw, needs_mtcnn, needs_onnx
from facerec.cli import main
from facerec.errors import FacerecError
from facerec.models import build_backbone
from facerec.models import onnx_file as onnx_file_module
from facerec.models.card import ThresholdRecord, card_for_backbone
from facerec.models.io import (
    RecognitionModel,
    export_model,
    load_recognition_model,
    read_model_file,
    write_model_file,
)

pytestmark = needs_onnx

TOLERANCE = 1e-4
TINY_CFG = {"name": "lowres_irse8", "embedding_size": 16, "input_size": 16, "options": {"widths": [4, 8, 8, 8]}}


def tiny_model(seed: int = 0) -> RecognitionModel:
    torch.manual_seed(seed)
    cfg = TINY_CFG
    net = build_backbone(cfg["name"], cfg["embedding_size"], cfg["input_size"], cfg["options"]).eval()
    record = ThresholdRecord(0.31, "none", True, "synthetic")
    card = card_for_backbone(cfg, net.state_dict(), [record], name="tiny", notes="a test model")
    return RecognitionModel(net, card)


def crops(batch: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path, monkeypatch) -> Path:
    """Conversions on the fly go to the test's own cache, never the user's."""
    cache = tmp_path / "onnx-cache"
    monkeypatch.setattr(onnx_file_module, "ONNX_CACHE", cache)
    return cache


@pytest.mark.parametrize("batch", [1, 7])
def test_export_matches_torch_at_any_batch_size(tmp_path, batch):
    from facerec.models.onnx import export_onnx, load_onnx_model

    model = tiny_model()
    path = export_onnx(model, tmp_path / "tiny.onnx")
    x = crops(batch, model.input_size)
    with torch.no_grad():
        expected = model.net(x)
    got = load_onnx_model(path).net(x)
    assert got.shape == (batch, 16) and got.dtype == torch.float32
    assert (got - expected).abs().max() < TOLERANCE


def test_the_batch_axis_is_dynamic_and_the_card_is_in_the_metadata(tmp_path):
    import onnx

    from facerec.models.onnx import export_onnx, load_onnx_model

    model = tiny_model()
    graph = onnx.load(str(export_onnx(model, tmp_path / "tiny.onnx")))
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["facerec_digest"] == model.card.digest
    assert json.loads(meta["facerec_card"]) == model.card.to_json()
    loaded = load_onnx_model(tmp_path / "tiny.onnx")
    assert loaded.card == model.card and loaded.card.thresholds[0].value == 0.31


def test_load_recognition_model_reads_onnx_files_and_checks_the_runtime(tmp_path):
    from facerec.models.onnx import OnnxNet, export_onnx

    path = export_onnx(tiny_model(), tmp_path / "tiny.onnx")
    assert isinstance(load_recognition_model(path).net, OnnxNet)
    assert isinstance(load_recognition_model(path, runtime="onnx").net, OnnxNet)
    with pytest.raises(FacerecError, match="runs on onnxruntime only"):
        load_recognition_model(path, runtime="torch")
    with pytest.raises(FacerecError, match="unknown runtime 'tensorrt'"):
        load_recognition_model(path, runtime="tensorrt")
    with pytest.raises(FacerecError, match="model file not found"):
        load_recognition_model(tmp_path / "missing.onnx")


def test_onnx_files_without_a_card_or_unreadable_are_clear_errors(tmp_path):
    import onnx

    from facerec.models.onnx import export_onnx, load_onnx_model

    graph = onnx.load(str(export_onnx(tiny_model(), tmp_path / "tiny.onnx")))
    del graph.metadata_props[:]
    onnx.save(graph, str(tmp_path / "bare.onnx"))
    with pytest.raises(FacerecError, match="has no facerec model card"):
        load_onnx_model(tmp_path / "bare.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(FacerecError, match="onnxruntime cannot load"):
        load_onnx_model(tmp_path / "junk.onnx")
    with pytest.raises(FacerecError, match=r"ends in \.onnx"):
        export_onnx(tiny_model(), tmp_path / "tiny.pt")


def test_runtime_onnx_exports_a_torch_model_once_into_the_cache(tmp_path, onnx_cache, monkeypatch):
    from facerec.models.onnx import OnnxNet

    model = tiny_model()
    file = export_model(tmp_path / "model.pt", model.net, TINY_CFG, name="tiny")
    on_onnx = load_recognition_model(file, runtime="onnx")
    assert isinstance(on_onnx.net, OnnxNet) and on_onnx.card.digest == model.card.digest
    assert on_onnx.net.path == onnx_cache / f"{model.card.digest}-opset17.onnx"

    def no_second_export(*args, **kwargs):
        raise AssertionError("the cached export should have been reused")

    monkeypatch.setattr(onnx_file_module, "write_onnx", no_second_export)
    again = load_recognition_model(file, runtime="onnx")
    x = crops(3, model.input_size)
    with torch.no_grad():
        assert (again.net(x) - model.net(x)).abs().max() < TOLERANCE


def test_missing_onnx_packages_say_how_to_install_them(tmp_path, monkeypatch):
    from facerec.models.onnx import export_onnx, load_onnx_model

    path = export_onnx(tiny_model(), tmp_path / "tiny.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # None in sys.modules: the import fails
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(FacerecError, match=r"needs the 'onnx' package: pip install 'facerec\[onnx\]'"):
        export_onnx(tiny_model(), tmp_path / "again.onnx")
    with pytest.raises(FacerecError, match="needs the 'onnxruntime' package"):
        load_onnx_model(path)


@needs_dlib
def test_the_reference_model_exports_to_onnx_and_gives_its_own_descriptors(tmp_path, capsys):
    out = tmp_path / "dlib.onnx"
    assert main(["export", "dlib", "--format", "onnx", "--out", str(out)]) == 0
    assert "Warning" not in capsys.readouterr().err
    on_onnx = load_recognition_model(str(out), runtime="onnx")
    assert on_onnx.card.template_name == "dlib_150" and on_onnx.input_size == 150
    x = torch.rand(3, 3, 150, 150, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = load_recognition_model("dlib").net(x).detach()
    assert torch.allclose(torch.as_tensor(on_onnx.net(x)), expected, atol=1e-4)


def test_export_then_embed_on_onnxruntime_equals_torch(tmp_path, tree, capsys):
    out = tmp_path / "default.onnx"
    assert main(["export", "fast", "--format", "onnx", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    runs = {
        "torch": ["--model", "fast", "--runtime", "torch"],
        "onnx-file": ["--model", str(out), "--runtime", "onnx"],
        "onnx-cached": ["--model", "fast", "--runtime", "onnx"],
    }
    embeddings = {}
    for name, model_args in runs.items():
        target = tmp_path / f"{name}.npy"
        assert main(["embed", str(tree), *model_args, "--device", "cpu", "--flip", "--out", str(target)]) == 0
        embeddings[name] = np.load(target)
    assert embeddings["torch"].shape == (12, 128)
    for name in ("onnx-file", "onnx-cached"):
        np.testing.assert_allclose(embeddings[name], embeddings["torch"], atol=TOLERANCE)


def test_export_of_a_missing_or_onnx_model_is_a_clear_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err and "Traceback" not in err
    assert main(["export", str(tmp_path / "model.onnx")]) == 2
    assert "is already an ONNX model" in capsys.readouterr().err


def lfw_images() -> list[Path]:
    return sorted((LFW / "images").glob("*/*.jpg"))


@needs_lfw
@needs_mtcnn
def test_the_default_model_on_onnxruntime_equals_torch_on_100_aligned_lfw_faces(tmp_path):
    from facerec.align.pipeline import NoFaceError
    from facerec.data.transforms import to_tensor
    from facerec.models.onnx import export_onnx, load_onnx_model
    from facerec.pipeline import RecognitionPipeline

    pipeline = RecognitionPipeline.load("fast", detector="mtcnn", device="cpu")

    def aligned(path: Path) -> torch.Tensor | None:
        try:
            return to_tensor(pipeline.align(path).crop)
        except NoFaceError:
            return None

    faces = torch.stack(list(islice((c for c in map(aligned, lfw_images()[::50]) if c is not None), 100)))
    assert faces.shape == (100, 3, 64, 64)
    onnx_net = load_onnx_model(export_onnx("fast", tmp_path / "default.onnx")).net
    with torch.no_grad():
        expected = pipeline.net(faces)
    assert (onnx_net(faces) - expected).abs().max() < TOLERANCE


def test_a_half_precision_copy_is_half_the_size_keeps_the_card_and_embeds_alike(tmp_path, capsys):
    model = tiny_model()
    source = write_model_file(tmp_path / "tiny.pt", model.card, model.net.state_dict())
    out = tmp_path / "tiny16.pt"
    assert main(["export", str(source), "--format", "fp16", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    half = load_recognition_model(str(out))
    stored = read_model_file(out).backbone
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert out.stat().st_size < source.stat().st_size
    assert half.card.thresholds == model.card.thresholds and half.card.template == model.card.template
    assert half.digest != model.digest  # other weights, another identity
    x = crops(4, model.input_size)
    with torch.no_grad():
        a, b = model.net(x), half.net(x)
    assert b.dtype == torch.float32 and not torch.equal(a, b)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.999
    assert main(["export", str(tmp_path / "missing.pt"), "--format", "fp16"]) == 2
    assert "model file not found" in capsys.readouterr().err
