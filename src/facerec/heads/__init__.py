"""Classification heads and metric losses, selected by name from `HEADS`."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from facerec.heads import margin, metric, partial_fc  # noqa: F401  (registers)
from facerec.heads.registry import HEADS

# Losses that compare pairs inside a batch need several images per identity in each batch.
PAIRWISE_LOSSES = frozenset({"contrastive", "triplet"})


def build_head(name: str, embedding_size: int, num_classes: int, options: dict[str, Any] | None = None) -> nn.Module:
    """Build a head/loss, passing the embedding size and class count to those that take them."""
    fn = HEADS.get(name)
    params = inspect.signature(fn).parameters
    context = {"embedding_size": embedding_size, "num_classes": num_classes}
    kwargs = {k: v for k, v in context.items() if k in params}
    options = dict(options or {})
    for key in kwargs:
        if key in options:
            raise ValueError(f"'{key}' of loss '{name}' is set by the run, not by its options")
    return HEADS.build(name, **kwargs, **options)


__all__ = ["HEADS", "PAIRWISE_LOSSES", "build_head"]
