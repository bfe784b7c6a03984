"""The registries a config chooses its components from, gathered for listing (`facerec components`)."""

from __future__ import annotations

from typing import Any

from facerec.registry import Registry


def registries() -> list[Registry[Any]]:
    """Backbones, heads and losses, optimizers, learning-rate schedules, data sources. Imported
    here, not at module level: each pulls in torch and its package."""
    from facerec.data import SOURCES
    from facerec.heads import HEADS
    from facerec.models import BACKBONES
    from facerec.train.optim import OPTIMIZERS, SCHEDULES

    return [BACKBONES, HEADS, OPTIMIZERS, SCHEDULES, SOURCES]


def component_names() -> dict[str, list[str]]:
    """{kind of component: its registered names}."""
    return {registry.kind: registry.names() for registry in registries()}
