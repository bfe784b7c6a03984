"""Atomic checkpoint files with rotation, and discovery of the latest one."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facerec.errors import FacerecError, TrainingError

PATTERN = re.compile(r"checkpoint_(\d+)(?:\.rank(\d+))?\.pt$")


def checkpoint_name(step: int, rank: int = 0) -> str:
    """checkpoint_<step>.pt for rank 0 (and single-process runs), checkpoint_<step>.rank<r>.pt else."""
    return f"checkpoint_{step:08d}.pt" if rank == 0 else f"checkpoint_{step:08d}.rank{rank}.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, step: int, payload: dict[str, Any], keep: int, rank: int = 0) -> Path:
    """Write this rank's checkpoint atomically (tmp + rename), keep its newest `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / checkpoint_name(step, rank)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    for old in list_checkpoints(directory, rank)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(directory: Path, rank: int = 0) -> list[Path]:
    """This rank's checkpoints, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = PATTERN.search(p.name)
        if m and int(m.group(2) or 0) == rank:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        # memory-mapped: arrays of millions of class rows are copied into the run from the file
        # as they are loaded, not first read whole into memory
        payload = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:
        raise TrainingError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != "facerec-checkpoint":
        raise TrainingError(f"{path} is not a facerec training checkpoint")
    return payload


def initial_weights(spec: str | Path) -> dict[str, Any]:
    """The `net` state a fine-tuning run starts from: a training checkpoint's whole network, or
    an exported model file's backbone, or a named torch model's ('fast': the shipped student)."""
    from facerec.models import MODELS
    from facerec.models.io import load_recognition_model, read_model_file

    try:
        if str(spec) in MODELS:
            backbone = load_recognition_model(str(spec)).net.state_dict()
            return {f"backbone.{k}": v for k, v in backbone.items()}
        found = read_model_file(spec)
    except FacerecError as exc:
        raise TrainingError(f"train.init_from: {exc}") from exc
    return found.net if found.net is not None else {f"backbone.{k}": v for k, v in found.backbone.items()}
