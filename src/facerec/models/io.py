"""Saving and loading embedding models with the config that rebuilds them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facerec.core.geometry import ARCFACE_112
from facerec.config import upgrade_stored
from facerec.errors import FacerecError


def export_model(
    path: str | Path, backbone: nn.Module, model_cfg: dict[str, Any], input_size: int, threshold: float | None = None
) -> Path:
    """A self-contained model file; `threshold` is the cosine 'same person' threshold measured
    on held-out identities, used by verify/identify when the user gives none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": "facerec-model",
        "version": 1,
        "model": model_cfg,
        "input_size": input_size,
        "state_dict": backbone.state_dict(),
        "threshold": threshold,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


@dataclass
class Embedder:
    """An embedding network with the alignment its input expects."""

    net: nn.Module
    input_size: int
    template: np.ndarray  # five landmark positions in the (input_size x input_size) crop
    name: str
    threshold: float | None = None  # calibrated 'same person' cosine threshold, when known


# The model facerec ships (trained by `scripts/train_default_model.sh`; card: docs/model_card.md)
DEFAULT_MODEL_FILE = Path(__file__).parent / "weights" / "default.pt"


def load_embedder(spec: str | Path, device: str | torch.device = "cpu") -> Embedder:
    """'default' for the shipped model, 'dlib' for the reference model, else a facerec model
    file or checkpoint."""
    if str(spec) == "dlib":
        from facerec.models.reference import DLIB_150, DlibResNet

        return Embedder(DlibResNet(), 150, DLIB_150, "dlib")
    name = "default" if str(spec) == "default" else Path(spec).stem
    net, size, threshold = load_model_file(spec, device)
    return Embedder(net, size, ARCFACE_112 * size / 112.0, name, threshold)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, int]:
    """Load an exported model or a training checkpoint; returns (backbone in eval mode, input size)."""
    net, size, _ = load_model_file(path, device)
    return net, size


@dataclass
class ModelFile:
    """What an exported model file or a training checkpoint holds of the embedding network."""

    model: dict[str, Any]  # the model config (name, embedding_size, options)
    input_size: int
    backbone: dict[str, torch.Tensor]  # the backbone's state dict
    threshold: float | None
    net: dict[str, torch.Tensor] | None = None  # a checkpoint's whole training network (heads too)


def read_model_file(path: str | Path) -> ModelFile:
    """Either file format; 'default' names the shipped model."""
    if str(path) == "default":
        path = DEFAULT_MODEL_FILE
        if not path.is_file():
            raise FacerecError(f"the default model file is missing from this installation ({path})")
    path = Path(path)
    if not path.is_file():
        raise FacerecError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise FacerecError(f"cannot read model file {path}: {exc}") from exc
    if isinstance(payload, dict) and payload.get("format") == "facerec-checkpoint":
        cfg, net = payload["config"], payload["net"]
        backbone = {k[len("backbone.") :]: v for k, v in net.items() if k.startswith("backbone.")}
        cfg = upgrade_stored(cfg)
        return ModelFile(cfg["backbone"], cfg["backbone"]["input_size"], backbone, None, net)
    if isinstance(payload, dict) and payload.get("format") == "facerec-model":
        size = payload.get("input_size", payload.get("image_size"))
        return ModelFile(payload["model"], size, payload["state_dict"], payload.get("threshold"))
    raise FacerecError(f"{path} is neither a facerec training checkpoint nor a facerec model file")


def load_model_file(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, int, float | None]:
    from facerec.models import build_backbone

    found = read_model_file(path)
    cfg = found.model
    backbone = build_backbone(cfg["name"], cfg["embedding_size"], found.input_size, cfg.get("options"))
    backbone.load_state_dict(found.backbone)
    return backbone.to(device).eval(), found.input_size, found.threshold
