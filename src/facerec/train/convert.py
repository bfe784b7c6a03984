"""Convert the checkpoint of a run with a sharded class layer (Partial FC) between world sizes.

Every rank's file holds the same backbone, optimizer and schedule state and its own block of
class centers (with their momentum). Converting concatenates the blocks in rank order and cuts
them again for the new number of processes; world size 1 gives one single-process file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from facerec.distributed import shard_range
from facerec.errors import TrainingError
from facerec.train.checkpoint import PATTERN, checkpoint_name, load_checkpoint

SHARDED = ("head.weight", "head.momentum_buffer", "head.last_step")


def rank_files(path: Path) -> list[Path]:
    """All ranks' files of the step that `path` (any rank's file) belongs to, in rank order."""
    m = PATTERN.search(path.name)
    if m is None:
        raise TrainingError(f"{path} is not named like a checkpoint (checkpoint_<step>[.rank<r>].pt)")
    step = int(m.group(1))
    first = load_checkpoint(path.parent / checkpoint_name(step, 0))
    world = first.get("world_size", 1)
    files = [path.parent / checkpoint_name(step, r) for r in range(world)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise TrainingError(f"checkpoint of step {step} is incomplete: {missing[0]} is missing")
    return files


def _head_param_state(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The optimizer state of a dense-update head's centers, when the optimizer holds them."""
    index = payload.get("head_weight_optimizer_index")
    return None if index is None else payload["optimizer"]["state"].get(index)


def convert(path: str | Path, world_size: int, out_dir: str | Path) -> list[Path]:
    path, out_dir = Path(path), Path(out_dir)
    payloads = [load_checkpoint(f) for f in rank_files(path)]
    if "head.weight" not in payloads[0]["net"] or "head._extra_state" not in payloads[0]["net"]:
        raise TrainingError(f"{path}: only runs with a partial_fc head have sharded checkpoints")
    full = {k: torch.cat([p["net"][k] for p in payloads]) for k in SHARDED if k in payloads[0]["net"]}
    dense_states = [_head_param_state(p) for p in payloads]
    dense_full = torch.cat([s["momentum_buffer"] for s in dense_states]) if all(dense_states) else None
    num_classes = len(full["head.weight"])
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for rank in range(world_size):
        start, end = shard_range(num_classes, rank, world_size)
        payload = {**payloads[0], "world_size": world_size, "rank": rank}
        net = dict(payloads[0]["net"])
        for key, value in full.items():
            net[key] = value[start:end].clone()
        extra = dict(net["head._extra_state"])
        extra["class_range"] = (start, end)
        extra["sampler"] = torch.Generator().manual_seed(7919 + rank).get_state()  # fresh negatives
        net["head._extra_state"] = extra
        payload["net"] = net
        if dense_full is not None:
            payload["optimizer"] = _with_head_momentum(payloads[0], dense_full[start:end].clone())
        target = out_dir / checkpoint_name(payload["step"], rank)
        torch.save(payload, target)
        written.append(target)
    return written


def _with_head_momentum(payload: dict[str, Any], buffer: torch.Tensor) -> dict[str, Any]:
    optimizer = payload["optimizer"]
    state = {k: dict(v) for k, v in optimizer["state"].items()}
    state[payload["head_weight_optimizer_index"]]["momentum_buffer"] = buffer
    return {**optimizer, "state": state}
