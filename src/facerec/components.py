"""The registries a config chooses its components from, gathered for listing (`facerec components`)."""

from __future__ import annotations

from typing import Any

from facerec.registry import Registry


def registries() -> list[Registry[Any]]:
    """Named models, backbones, heads, margins, optimizers, learning-rate schedules, data
    sources, face detectors, evaluation protocols, template poolings. Imported here, not at module level: each
    pulls in torch and its package."""
    from facerec.align.pipeline import DETECTORS
    from facerec.data import SOURCES
    from facerec.eval.protocols import PROTOCOLS
    from facerec.eval.templates import POOLINGS
    from facerec.heads import HEADS
    from facerec.heads.margins import MARGINS
    from facerec.models import BACKBONES, MODELS
    from facerec.train.optim import OPTIMIZERS, SCHEDULES

    return [MODELS, BACKBONES, HEADS, MARGINS, OPTIMIZERS, SCHEDULES, SOURCES, DETECTORS, PROTOCOLS, POOLINGS]


def component_names() -> dict[str, list[str]]:
    """{kind of component: its registered names}."""
    return {registry.kind: registry.names() for registry in registries()}
