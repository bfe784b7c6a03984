"""Classification heads and metric losses, selected by name from `LOSSES`."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from facerec.heads import margin, metric, partial_fc  # noqa: F401  (registers)
from facerec.heads.registry import LOSSES

# Losses that compare pairs inside a batch need several images per identity in each batch.
PAIRWISE_LOSSES = frozenset({"contrastive", "triplet"})


def build_loss(name: str, embedding_size: int, num_classes: int, options: dict[str, Any] | None = None) -> nn.Module:
    """Build a head/loss, passing the embedding size and class count to those that take them."""
    fn = LOSSES.get(name)
    params = inspect.signature(fn).parameters
    context = {"embedding_size": embedding_size, "num_classes": num_classes}
    kwargs = {k: v for k, v in context.items() if k in params}
    options = dict(options or {})
    for key in kwargs:
        if key in options:
            raise ValueError(f"'{key}' of loss '{name}' is set by the run, not by its options")
    return LOSSES.build(name, **kwargs, **options)


__all__ = ["LOSSES", "PAIRWISE_LOSSES", "build_loss"]
