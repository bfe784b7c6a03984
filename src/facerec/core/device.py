"""The torch device to compute on, chosen in one place."""

from __future__ import annotations

import torch

from facerec.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """'auto': the GPU when CUDA is available, else the CPU; otherwise the named device
    ('cpu', 'cuda', 'cuda:1' ...), with a ConfigError when it does not exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        _require_cuda(name, device.index)
    return device


def _require_cuda(name: str, index: int | None) -> None:
    if not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but CUDA is not available on this machine")
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise ConfigError(f"device '{name}' asked for, but this machine has {count} CUDA device(s)")
