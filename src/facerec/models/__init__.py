"""Embedding backbones (`BACKBONES`), model files with their cards, named models (`MODELS`)."""

from __future__ import annotations

from facerec.models import named  # noqa: F401  (registers 'default', 'dlib')
from facerec.models.backbones import build_backbone
from facerec.models.registry import BACKBONES, MODELS

__all__ = ["BACKBONES", "MODELS", "build_backbone"]
