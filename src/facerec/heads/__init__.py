"""Heads and metric losses, selected by name from `HEADS`; every one is a `Head` (see
`facerec.heads.base` for the contract a training loop relies on). Margins for cosine class
layers are selected by name from `MARGINS`."""

from __future__ import annotations

import inspect
from typing import Any

from facerec.errors import ConfigError
from facerec.heads import classifier, metric, partial_fc  # noqa: F401  (registers)
from facerec.heads.base import Head, OptimizerStep
from facerec.heads.margins import MARGINS, Margin, build_margin
from facerec.heads.registry import HEADS


def head_type(name: str) -> type[Head]:
    """The class registered as `name`: its capability flags, read before building it."""
    cls = HEADS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, Head)):
        raise TypeError(f"head '{name}' is registered as {cls!r}, not a Head subclass")
    return cls


def build_head(name: str, embedding_size: int, num_classes: int, options: dict[str, Any] | None = None) -> Head:
    """Build a head, passing the embedding size and class count to those that take them."""
    params = inspect.signature(head_type(name)).parameters
    context = {"embedding_size": embedding_size, "num_classes": num_classes}
    kwargs = {k: v for k, v in context.items() if k in params}
    options = dict(options or {})
    for key in kwargs:
        if key in options:
            raise ConfigError(f"'{key}' of head '{name}' is set by the run, not by its options")
    return HEADS.build(name, **kwargs, **options)


__all__ = ["HEADS", "MARGINS", "Head", "Margin", "OptimizerStep", "build_head", "build_margin", "head_type"]
