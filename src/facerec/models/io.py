"""Model files: exporting a backbone with its card, and loading any model by name or path.

`load_recognition_model(spec)` is the one way to get a model for inference: `spec` is a named
model of the `MODELS` registry ('default', 'dlib', ...), an exported model file, a training
checkpoint or an ONNX file (`facerec export`). Files written before cards existed still load;
their card is rebuilt from what they hold (architecture, input size, weights, the threshold
they recorded).

The runtime is torch, onnxruntime ('onnx') or 'auto' (the commands' default): a torch model
that also runs on onnxruntime for the batch sizes at which that was measured faster
(`facerec.models.runtime`). An ONNX file runs on onnxruntime only; a torch model asked to run
on onnxruntime is exported once into ~/.cache/facerec/onnx (keyed by its content digest) and
keeps its card, so its galleries and thresholds stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facerec.config import upgrade_stored
from facerec.core.files import torch_save
from facerec.errors import FacerecError
from facerec.models.backbones import build_backbone
from facerec.models.card import ModelCard, ThresholdRecord, backbone_config_of, card_for_backbone
from facerec.models.onnx_file import OnnxNet, cached_onnx_file, is_onnx_file, read_onnx
from facerec.models.registry import BACKBONES, MODELS
from facerec.models.runtime import RuntimeChoice, auto_choice

MODEL_FORMAT = "facerec-model"
RUNTIMES = ("torch", "onnx", "auto")


@dataclass
class RecognitionModel:
    """An embedding network with the card that says how to feed it and how to read its scores."""

    net: nn.Module
    card: ModelCard
    auto: RuntimeChoice | None = None  # runtime auto: onnxruntime for the batches it runs faster

    def inference_net(self, batch: int) -> nn.Module:
        """The network for `batch` crops without autograd: onnxruntime where the auto runtime
        measured it faster, `net` otherwise (and whenever gradients are wanted: use `net`)."""
        return self.auto.onnx if self.auto is not None and self.auto.uses_onnx(batch) else self.net

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def template(self) -> np.ndarray:
        return self.card.template_points

    @property
    def name(self) -> str:
        return self.card.name or self.card.architecture

    @property
    def digest(self) -> str:
        return self.card.digest


def export_model(
    path: str | Path,
    backbone: nn.Module,
    backbone_cfg: dict[str, Any],
    thresholds: list[ThresholdRecord] | None = None,
    name: str = "",
    notes: str = "",
) -> Path:
    """A self-contained model file: the backbone's weights and its card. `backbone_cfg` holds
    name, embedding_size, input_size and options (the run's `backbone` config section)."""
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    card = card_for_backbone(backbone_cfg, state, thresholds, name=name or Path(path).parent.name, notes=notes)
    return write_model_file(path, card, state)


def write_model_file(path: str | Path, card: ModelCard, state: dict[str, torch.Tensor]) -> Path:
    payload = {"format": MODEL_FORMAT, "version": 2, "card": card.to_json(), "state_dict": state}
    return torch_save(payload, Path(path))


def write_half_precision(model: str | Path, out: str | Path) -> Path:
    """A copy of a facerec model (a named torch model or a model file) with its floating-point
    weights in half precision: half the size on disk, loaded (as float32) like any model file.
    Its digest is the copy's own."""
    found = load_recognition_model(model, "cpu", runtime="torch")
    card = found.card
    if isinstance(found.net, OnnxNet) or card.architecture not in BACKBONES.names():
        raise FacerecError(f"model '{found.name}' is not a facerec torch network ({card.architecture})")
    state = {k: v.half() if v.is_floating_point() else v for k, v in found.net.state_dict().items()}
    card = card_for_backbone(backbone_config_of(card), state, card.thresholds, name=card.name, notes=card.notes)
    return write_model_file(out, card, state)


@dataclass
class ModelFile:
    """What an exported model file or a training checkpoint holds of the embedding network."""

    card: ModelCard
    backbone: dict[str, torch.Tensor]  # the backbone's state dict
    net: dict[str, torch.Tensor] | None = None  # a checkpoint's whole training network (heads too)


def read_model_file(path: str | Path) -> ModelFile:
    """An exported model file (with or without a card) or a training checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FacerecError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise FacerecError(f"cannot read model file {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") not in (MODEL_FORMAT, "facerec-checkpoint"):
        raise FacerecError(f"{path} is neither a facerec training checkpoint nor a facerec model file")
    if payload["format"] == "facerec-checkpoint":
        return _from_checkpoint(payload, path)
    if "card" in payload:
        return ModelFile(ModelCard.from_json(payload["card"]), payload["state_dict"])
    return _from_card_less_file(payload, path)


def _from_checkpoint(payload: dict[str, Any], path: Path) -> ModelFile:
    cfg, net = upgrade_stored(payload["config"]), payload["net"]
    backbone = {k[len("backbone.") :]: v for k, v in net.items() if k.startswith("backbone.")}
    card = card_for_backbone(cfg["backbone"], backbone, name=f"{path.parent.parent.name}:{path.stem}")
    return ModelFile(card, backbone, net)


def _from_card_less_file(payload: dict[str, Any], path: Path) -> ModelFile:
    """Version-1 files: the backbone config, input size and one held-out threshold."""
    size = payload.get("input_size", payload.get("image_size"))
    thresholds = []
    if payload.get("threshold") is not None:
        thresholds.append(ThresholdRecord(float(payload["threshold"]), "none", True, "held-out identities"))
    cfg = {**payload["model"], "input_size": size}
    card = card_for_backbone(cfg, payload["state_dict"], thresholds, name=path.parent.name or path.stem)
    return ModelFile(card, payload["state_dict"])


def build_from_file(found: ModelFile, device: str | torch.device = "cpu") -> RecognitionModel:
    card = found.card
    net = build_backbone(card.architecture, card.embedding_size, card.input_size, card.options)
    net.load_state_dict(found.backbone)
    return RecognitionModel(net.to(device).eval(), card)


def load_recognition_model(
    spec: str | Path, device: str | torch.device = "cpu", runtime: str | None = None
) -> RecognitionModel:
    """A named model ('default', 'dlib', see `facerec components`), a model file / checkpoint or
    an ONNX file, run by `runtime`: 'torch', 'onnx' (onnxruntime), 'auto' (a torch model on
    whichever of the two is faster for each batch size; torch for what cannot be exported) or
    None, the model's own (onnx for an ONNX file, torch otherwise)."""
    if runtime not in (None, *RUNTIMES):
        raise FacerecError(f"unknown runtime '{runtime}' (use {' or '.join(RUNTIMES)})")
    if is_onnx_file(spec):
        return _load_onnx_file(spec, device, runtime)
    model = _load_torch_model(spec, device)
    if runtime == "auto":
        model.auto = auto_choice(model.net, model.card, torch.device(device))
    return on_onnxruntime(model, device) if runtime == "onnx" else model


def _load_onnx_file(path: str | Path, device: str | torch.device, runtime: str | None) -> RecognitionModel:
    if runtime == "torch":
        raise FacerecError(f"{path} is an ONNX model: it runs on onnxruntime only (runtime onnx or auto, not torch)")
    return RecognitionModel(*read_onnx(path, device))


def on_onnxruntime(model: RecognitionModel, device: str | torch.device = "cpu") -> RecognitionModel:
    """The same model, card included, run by onnxruntime from its cached ONNX export."""
    if isinstance(model.net, OnnxNet):
        return model
    return RecognitionModel(OnnxNet(cached_onnx_file(model.net, model.card), device), model.card)


def _load_torch_model(spec: str | Path, device: str | torch.device) -> RecognitionModel:
    if str(spec) in MODELS:
        return MODELS.build(str(spec), device=device)
    if not Path(spec).exists() and Path(spec).suffix == "":
        MODELS.get(str(spec))  # not a file either: the error lists the named models
    return build_from_file(read_model_file(spec), device)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, int]:
    """The backbone in eval mode and its input size, from a model file, checkpoint or name."""
    model = load_recognition_model(path, device)
    return model.net, model.input_size
