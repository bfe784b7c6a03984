"""torch.distributed set-up: process group from torchrun's environment, backend by device."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(device: torch.device) -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, ...); single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device))
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def current() -> DistContext:
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistContext()


def all_reduce_sum_hook(state, bucket):  # type: ignore[no-untyped-def]  # DDP rejects string annotations
    """DDP communication hook that sums gradients instead of averaging them: with a loss that is
    already the mean over the global batch, the sum is the exact full-batch gradient."""
    fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """Classes [start, end) held by `rank`: contiguous, sizes differing by at most one."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)
