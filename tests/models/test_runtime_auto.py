"""The auto runtime: a torch model runs on onnxruntime below the measured crossover and on torch
from it, with the same embeddings as torch alone; forcing a runtime still works; a model that
cannot go to onnxruntime stays on torch and the log says why."""

from __future__ import annotations

import argparse
import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import needs_onnx
from facerec.align.pipeline import PRE_ALIGNED
from facerec.cli.pipeline_options import add_runtime_argument
from facerec.models import build_backbone
from facerec.models import onnx_file as onnx_file_module
from facerec.models import runtime as runtime_module
from facerec.models.card import card_for_backbone
from facerec.models.io import RecognitionModel, export_model, load_recognition_model
from facerec.models.onnx_file import OnnxNet
from facerec.models.runtime import auto_choice, measure_speeds, read_records
from facerec.pipeline import RecognitionPipeline

TOLERANCE = 1e-4
TINY_CFG = {"name": "lowres_irse8", "embedding_size": 16, "input_size": 16, "options": {"widths": [4, 8, 8, 8]}}
CROSSOVER = 4


def tiny_file(tmp_path, seed: int = 0):
    torch.manual_seed(seed)
    cfg = TINY_CFG
    net = build_backbone(cfg["name"], cfg["embedding_size"], cfg["input_size"], cfg["options"]).eval()
    return export_model(tmp_path / "tiny.pt", net, cfg, name="tiny")


def crops(batch: int, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def records(tmp_path, monkeypatch):
    """The recorded speeds and the ONNX cache live in the test's folder, never the package's."""
    monkeypatch.setattr(onnx_file_module, "ONNX_CACHE", tmp_path / "onnx-cache")
    path = tmp_path / "runtime_speed.json"
    monkeypatch.setattr(runtime_module, "SPEED_FILE", path)
    return path


def onnx_calls(monkeypatch) -> list[int]:
    """The batch size of every onnxruntime call from now on."""
    calls: list[int] = []
    forward = OnnxNet.forward

    def counted(self, x):
        calls.append(len(x))
        return forward(self, x)

    monkeypatch.setattr(OnnxNet, "forward", counted)
    return calls


@needs_onnx
def test_auto_equals_torch_on_both_sides_of_the_crossover(tmp_path, records, monkeypatch):
    path = tiny_file(tmp_path)
    card = load_recognition_model(path, "cpu", runtime="torch").card
    runtime_module.record_speeds(card, {"crossover": CROSSOVER, "date": "test", "command": "test"}, records)
    auto = RecognitionPipeline(load_recognition_model(path, "cpu", runtime="auto"), PRE_ALIGNED, device="cpu")
    torch_net = load_recognition_model(path, "cpu", runtime="torch").net.double()
    calls = onnx_calls(monkeypatch)
    for batch in (1, CROSSOVER - 1, CROSSOVER, 2 * CROSSOVER + 1):
        x = crops(batch)
        got = auto.embed_tensors(x)
        with torch.no_grad():  # independent reference: torch in float64, flip-summed, normalized
            expected = F.normalize(torch_net(x.double()) + torch_net(x.flip(3).double()), dim=1)
        assert (got.double() - expected).abs().max() < TOLERANCE, batch
    # each embedding is two calls (the crops and their mirror images); only the small batches on onnxruntime
    assert calls == [1, 1, CROSSOVER - 1, CROSSOVER - 1]


@needs_onnx
def test_forcing_a_runtime(tmp_path, records):
    path = tiny_file(tmp_path)
    on_torch = load_recognition_model(path, "cpu", runtime="torch")
    on_onnx = load_recognition_model(path, "cpu", runtime="onnx")
    assert on_torch.auto is None and on_torch.inference_net(1) is on_torch.net
    assert isinstance(on_onnx.net, OnnxNet) and on_onnx.inference_net(64) is on_onnx.net
    parser = argparse.ArgumentParser()
    add_runtime_argument(parser)
    assert parser.parse_args([]).runtime == "auto"
    assert parser.parse_args(["--runtime", "torch"]).runtime == "torch"
    assert parser.parse_args(["--runtime", "onnx"]).runtime == "onnx"


@needs_onnx
def test_an_unrecorded_model_is_measured_once_and_the_crossover_follows_the_speeds(tmp_path, records, monkeypatch):
    monkeypatch.setattr(runtime_module, "FIRST_USE_REPEATS", 2)  # a short measurement: the test checks the logic
    path = tiny_file(tmp_path, seed=3)
    model = load_recognition_model(path, "cpu", runtime="auto")
    assert isinstance(model.net, nn.Module) and not isinstance(model.net, OnnxNet)  # autograd stays on torch
    cached = list((tmp_path / "onnx-cache").glob("*.speed.json"))
    assert len(cached) == 1
    measured = read_records(cached[0])
    # the crossover is the first measured batch where torch is at least as fast (else None)
    wins = [b for b, t, o in zip(measured["batches"], measured["torch"], measured["onnx"], strict=True) if t >= o]
    assert measured["crossover"] == (wins[0] if wins else None)
    # torch at least as fast at batch 1: torch alone; else onnxruntime below the crossover
    assert (model.auto is None) if measured["crossover"] == 1 else (model.auto.crossover == measured["crossover"])

    def no_second_measurement(*args, **kwargs):
        raise AssertionError("measured twice")

    monkeypatch.setattr(runtime_module, "measure_speeds", no_second_measurement)
    again = load_recognition_model(path, "cpu", runtime="auto").auto
    assert (again is None) == (model.auto is None) and (again is None or again.crossover == measured["crossover"])


def test_the_crossover_is_the_first_batch_where_torch_keeps_up(monkeypatch):
    speeds = {"torch": {1: 100, 2: 190, 4: 400, 8: 700}, "onnx": {1: 150, 2: 200, 4: 390, 8: 900}}
    nets = {"torch": nn.Identity(), "onnx": nn.Identity()}
    names = {id(net): name for name, net in nets.items()}
    monkeypatch.setattr(runtime_module, "faces_per_second", lambda net, size, b, r: speeds[names[id(net)]][b])
    found = measure_speeds(nets["torch"], nets["onnx"], 16, (8, 1, 4, 2), repeats=1)
    assert found["batches"] == [1, 2, 4, 8] and found["crossover"] == 4  # 400 >= 390; not 8 by a later loss
    speeds["torch"] = {1: 1, 2: 1, 4: 1, 8: 1}
    assert measure_speeds(nets["torch"], nets["onnx"], 16, (1, 2, 4, 8), repeats=1)["crossover"] is None


class Untraceable(nn.Module):
    """A torch network the ONNX exporter cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 16 * 16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            raise RuntimeError("data-dependent control flow")
        return self.linear(x.flatten(1))


@needs_onnx
def test_a_model_that_cannot_go_to_onnxruntime_stays_on_torch_and_says_why(tmp_path, records, caplog):
    cfg = TINY_CFG
    card = card_for_backbone(cfg, Untraceable().state_dict(), name="untraceable")
    cases = [
        (Untraceable(), torch.device("cpu"), "could not be exported to ONNX"),
        (type("Native", (Untraceable,), {"exportable": False})(), torch.device("cpu"), "not a torch network"),
        (Untraceable(), torch.device("cuda"), "measured on the CPU only"),
    ]
    for net, device, reason in cases:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="facerec.models.runtime"):
            assert auto_choice(net, card, device) is None
        assert "runtime auto for model untraceable: torch, because" in caplog.text and reason in caplog.text
    model = RecognitionModel(Untraceable(), card)
    assert model.inference_net(1) is model.net and isinstance(copy.deepcopy(model.net), Untraceable)


def test_the_recorded_crossovers_follow_their_measured_speeds():
    for digest, record in read_records().items():
        wins = [b for b, t, o in zip(record["batches"], record["torch"], record["onnx"], strict=True) if t >= o]
        assert record["crossover"] == (wins[0] if wins else None), digest
        assert record["command"].startswith("python benchmarks/onnx_speed.py")


@needs_onnx
def test_a_recorded_crossover_of_one_keeps_torch_alone_without_an_export(tmp_path, records, caplog):
    path = tiny_file(tmp_path)
    card = load_recognition_model(path, "cpu", runtime="torch").card
    runtime_module.record_speeds(card, {"crossover": 1, "date": "test", "command": "test"}, records)
    with caplog.at_level(logging.INFO, logger="facerec.models.runtime"):
        model = load_recognition_model(path, "cpu", runtime="auto")
    assert model.auto is None and model.inference_net(1) is model.net
    assert "torch, because it was at least as fast at every measured batch size" in caplog.text
    assert not (tmp_path / "onnx-cache").exists()  # nothing exported
