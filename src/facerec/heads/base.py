"""The contract every head meets, so a training loop never asks which head it holds.

A head turns a batch of embeddings and identity labels into a scalar loss. What a run must do
around it is declared by three class attributes:

- `needs_identity_batches`: the loss compares images of one identity inside a batch (pair and
  triplet losses), so the run needs identity-balanced batches (`data.sampler: pk`).
- `sharded`: the class layer is split across the ranks of the process group and returns the
  mean loss over the GLOBAL batch, identically on every rank; backbone gradients must then be
  summed across ranks, not averaged. Its checkpoints are per rank: `sharded_state_keys` and
  `reshard_state` convert them to another world size.
- `owns_update`: some state is updated by the head itself in `after_optimizer_step`, not by the
  optimizer (an instance may clear it, e.g. a Partial FC head with dense updates).

`after_optimizer_step` is called once per training step, after the optimizer step, with the
step's hyperparameters; it does nothing unless the head owns an update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from facerec.distributed import shard_range


@dataclass(frozen=True)
class OptimizerStep:
    """The hyperparameters of the optimizer step just taken, as they apply to the head: `lr` is
    already multiplied by the head's lr scale; `grad_scale` is the fp16 loss scale the gradients
    still carry (1 without loss scaling)."""

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    grad_scale: float = 1.0


class Head(nn.Module):
    """Base of every registered head: `forward(embeddings, labels)` returns the loss."""

    needs_identity_batches: ClassVar[bool] = False
    sharded: ClassVar[bool] = False
    owns_update: bool = False  # an instance may refine it (set in its __init__)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def after_optimizer_step(self, step: OptimizerStep) -> None:
        """Update the state the head owns (see `owns_update`); the default owns none."""

    @classmethod
    def sharded_state_keys(cls) -> tuple[str, ...]:
        """Keys of the head's state dict (relative to the head) whose rows are split by class
        across ranks, in rank order along dim 0. A key may be absent from a given state dict
        (e.g. a buffer only one update mode keeps)."""
        return ()

    @classmethod
    def reshard_state(cls, states: Sequence[Mapping[str, Any]], world_size: int) -> list[dict[str, Any]]:
        """The head state dicts for `world_size` ranks, from those of every rank of a run (in
        rank order; keys relative to the head). Sharded rows are joined and cut again by
        `facerec.distributed.shard_range`; every other entry is rank 0's (replicated state is
        identical on every rank)."""
        keys = [k for k in cls.sharded_state_keys() if k in states[0]]
        out = [dict(states[0]) for _ in range(world_size)]
        for key in keys:
            for state, part in zip(out, reshard_rows([s[key] for s in states], world_size), strict=True):
                state[key] = part
        return out


def reshard_rows(parts: Sequence[torch.Tensor], world_size: int) -> list[torch.Tensor]:
    """Per-rank blocks of class rows (rank order) cut again for `world_size` ranks."""
    full = torch.cat(list(parts))
    return [full[slice(*shard_range(len(full), rank, world_size))].clone() for rank in range(world_size)]
