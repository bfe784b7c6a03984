"""Building a backbone by name: every architecture module is imported here so it registers."""

from __future__ import annotations

from typing import Any

from torch import nn

from facerec.models import dlib_resnet, iresnet, lowres, mobilefacenet  # noqa: F401  (register in BACKBONES)
from facerec.models.registry import BACKBONES


def build_backbone(name: str, embedding_size: int, input_size: int, options: dict[str, Any] | None = None) -> nn.Module:
    return BACKBONES.build(name, embedding_size=embedding_size, input_size=input_size, **(options or {}))
