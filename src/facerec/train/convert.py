"""Convert the checkpoint of a run with a sharded head between world sizes.

Every rank's file holds the same backbone, optimizer and schedule state and its own block of
the head's class rows (with their momentum). The head says which of its state is split by
class (`Head.reshard_state`); converting joins the blocks in rank order and cuts them again
for the new number of processes; world size 1 gives one single-process file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from facerec.config import from_dict
from facerec.errors import TrainingError
from facerec.heads import head_type
from facerec.heads.base import reshard_rows
from facerec.train.checkpoint import PATTERN, checkpoint_name, load_checkpoint

HEAD = "head."


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


def convert(path: str | Path, world_size: int, out_dir: str | Path) -> list[Path]:
    path, out_dir = Path(path), Path(out_dir)
    payloads = [load_checkpoint(f) for f in rank_files(path)]
    name = from_dict(payloads[0]["config"], stored=True).head.name
    head = head_type(name)
    if not head.sharded:
        raise TrainingError(f"{path}: head '{name}' is not sharded; its checkpoints are the same for any world size")
    heads = head.reshard_state([head_state(p["net"]) for p in payloads], world_size)
    momenta = optimizer_head_momenta(payloads, world_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for rank in range(world_size):
        net = {k: v for k, v in payloads[0]["net"].items() if not k.startswith(HEAD)}
        net.update({HEAD + k: v for k, v in heads[rank].items()})
        payload = {**payloads[0], "world_size": world_size, "rank": rank, "net": net}
        if momenta is not None:
            payload["optimizer"] = with_head_momentum(payloads[0], momenta[rank])
        target = out_dir / checkpoint_name(payload["step"], rank)
        torch.save(payload, target)
        written.append(target)
    return written


def head_state(net: dict[str, Any]) -> dict[str, Any]:
    """The head's entries of a network state dict, keyed relative to the head."""
    return {k[len(HEAD) :]: v for k, v in net.items() if k.startswith(HEAD)}


def optimizer_head_momenta(payloads: list[dict[str, Any]], world_size: int) -> list[torch.Tensor] | None:
    """Each new rank's momentum rows of the head's class centers, when the optimizer (not the
    head) updates them; None otherwise."""
    index = payloads[0].get("head_weight_optimizer_index")
    states = [p["optimizer"]["state"].get(index) for p in payloads] if index is not None else []
    if not states or not all(s and "momentum_buffer" in s for s in states):
        return None
    return reshard_rows([s["momentum_buffer"] for s in states], world_size)


def with_head_momentum(payload: dict[str, Any], buffer: torch.Tensor) -> dict[str, Any]:
    optimizer = payload["optimizer"]
    state = {k: dict(v) for k, v in optimizer["state"].items()}
    state[payload["head_weight_optimizer_index"]]["momentum_buffer"] = buffer
    return {**optimizer, "state": state}
