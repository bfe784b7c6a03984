"""Embedding backbones (`BACKBONES`), model files with their cards, named models (`MODELS`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from facerec.models import iresnet, lowres, mobilefacenet  # noqa: F401  (registers backbones)
from facerec.models.registry import BACKBONES, MODELS


def build_backbone(name: str, embedding_size: int, input_size: int, options: dict[str, Any] | None = None) -> nn.Module:
    return BACKBONES.build(name, embedding_size=embedding_size, input_size=input_size, **(options or {}))


from facerec.models import named  # noqa: E402, F401  (registers 'default', 'dlib'; needs build_backbone)

__all__ = ["BACKBONES", "MODELS", "build_backbone"]
