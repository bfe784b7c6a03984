"""Where a Partial FC rank keeps its class rows: centers and (optionally) their momentum.

Options (`facerec.config.ClassStorageConfig`, `head.options.storage`):

- `dtype` fp32 | bf16 | fp16: the stored precision. Rows are gathered into fp32 buffers, every
  computation (catch-up of skipped steps, logits, gradient, SGD step) is fp32, and only the
  write-back rounds, once per row per sampled step.
- `rounding` nearest | stochastic: how the write-back rounds. Stochastic rounding picks the
  neighbour above or below with probabilities that make the stored value equal the fp32
  value in expectation, so updates smaller than half a unit in the last place (weight decay
  of 1e-4 per step against bf16's 2^-9) are not lost on average.
- `momentum` true | false: without it the class layer takes plain SGD steps (momentum 0) and
  stores nothing but the centers (2 bytes per value at bf16: 1 KB per class at 512-d).
- `backend` memory | mmap: the mmap backend keeps each array in a file of its own under
  `directory` (`torch.from_file(shared=True)`), read and written only at the sampled rows; the
  OS decides how much of it stays in the page cache, so the process's own memory is the
  sampled rows. The files are scratch space rewritten when a run starts; checkpoints hold the
  state (written from the mapping in one piece by torch.save, never row by row).

fp32 in memory is the plain layout of earlier versions; its arrays follow the module's dtype
(`.double()` in tests). The other layouts keep their dtype and only move devices; the mmap
backend stays on the CPU and its rows travel to the embeddings' device for each step.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facerec.config import ClassStorageConfig
from facerec.errors import ConfigError
from facerec.registry import suggest

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CHUNK = 8192  # rows per piece of a gather or write-back: bounded temporaries, reused allocations


class RoundingNoise:
    """Random bits for stochastic rounding, from a seeded stream that checkpoints resume:
    NumPy's SFC64 on the CPU (several times faster than torch's integer sampler there), a torch
    generator on a CUDA device."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.numpy = np.random.Generator(np.random.SFC64(seed))
        self.devices: dict[str, torch.Generator] = {}

    def bits16(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """Uniform integers in [0, 2^16): uint16 (CPU) or int32 (CUDA)."""
        n = int(np.prod(shape))
        if device.type == "cpu":
            return torch.from_numpy(self.numpy.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n]).view(shape)
        return torch.randint(0, 1 << 16, shape, generator=self._device(device), dtype=torch.int32, device=device)

    def uniform(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        if device.type == "cpu":
            return torch.from_numpy(self.numpy.random(tuple(shape), dtype=np.float32))
        return torch.rand(shape, generator=self._device(device), device=device)

    def _device(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self.devices:
            self.devices[key] = torch.Generator(device).manual_seed(self.seed)
        return self.devices[key]

    # SFC64's state as a tensor and ints: checkpoints stay loadable with weights_only=True
    def state_dict(self) -> dict[str, Any]:
        numpy_state = self.numpy.bit_generator.state
        words = torch.from_numpy(numpy_state["state"]["state"].view(np.int64).copy())
        return {
            "sfc64": (words, int(numpy_state["has_uint32"]), int(numpy_state["uinteger"])),
            "devices": {k: g.get_state() for k, g in self.devices.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        words, has_uint32, uinteger = state["sfc64"]
        self.numpy.bit_generator.state = {
            "bit_generator": "SFC64",
            "state": {"state": words.numpy().view(np.uint64).copy()},
            "has_uint32": has_uint32,
            "uinteger": uinteger,
        }
        for key, value in state.get("devices", {}).items():
            self._device(torch.device(key)).set_state(value)


def round_nearest(x: torch.Tensor, dtype: torch.dtype, noise: RoundingNoise) -> torch.Tensor:
    return x.to(dtype)


def round_stochastic(x: torch.Tensor, dtype: torch.dtype, noise: RoundingNoise) -> torch.Tensor:
    """x (fp32, consumed: may be overwritten) rounded to `dtype` up or down with probabilities
    proportional to the distance to the other neighbour: unbiased."""
    if dtype == torch.bfloat16:
        return _stochastic_bf16(x, noise)
    if dtype == torch.float32:
        return x
    return _stochastic_by_neighbours(x, dtype, noise)


def _stochastic_bf16(x: torch.Tensor, noise: RoundingNoise) -> torch.Tensor:
    """bf16 is the upper half of an fp32: adding uniform 16-bit noise to the lower half carries
    into the upper half with probability (lower half) / 2^16, then the upper half is the result.
    The magnitude bits round, the sign is untouched: unbiased for either sign."""
    assert sys.byteorder == "little"  # the upper half of each fp32 is its second int16
    bits = x.contiguous().view(torch.int32)
    random = noise.bits16(bits.shape, x.device)
    if x.device.type == "cpu":  # in place and unsigned, in one pass
        np.add(bits.numpy().view(np.uint32), random.numpy(), out=bits.numpy().view(np.uint32), casting="unsafe")
    else:
        bits.add_(random)
    upper = bits.view(torch.int16).view(*bits.shape[:-1], -1, 2)[..., 1]
    return upper.contiguous().view(torch.bfloat16)


def _stochastic_by_neighbours(x: torch.Tensor, dtype: torch.dtype, noise: RoundingNoise) -> torch.Tensor:
    """Any dtype: the nearest value and its neighbour on the other side of x, chosen with
    probability |x - nearest| / |neighbour - nearest|."""
    near = x.to(dtype)
    error = x - near.float()
    toward = torch.where(error >= 0, torch.inf, -torch.inf).to(dtype)
    other = torch.nextafter(near, toward)
    gap = other.float() - near.float()
    p = torch.where(gap != 0, error / gap, torch.zeros_like(error))
    return torch.where(noise.uniform(x.shape, x.device) < p, other, near)


ROUNDINGS: dict[str, Callable[[torch.Tensor, torch.dtype, RoundingNoise], torch.Tensor]] = {
    "nearest": round_nearest,
    "stochastic": round_stochastic,
}


Allocate = Callable[[tuple[int, int], torch.dtype, str, ClassStorageConfig], torch.Tensor]


def _allocate_in_memory(
    shape: tuple[int, int], dtype: torch.dtype, name: str, spec: ClassStorageConfig
) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype)


def _allocate_in_file(shape: tuple[int, int], dtype: torch.dtype, name: str, spec: ClassStorageConfig) -> torch.Tensor:
    """A zero-filled array backed by a shared mapping of a (sparse, new) file."""
    path = Path(spec.directory or "") / name
    nbytes = shape[0] * shape[1] * torch.finfo(dtype).bits // 8
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.truncate(nbytes)
    except OSError as exc:
        raise ConfigError(f"head.options.storage.directory: cannot create {path}: {exc}") from exc
    return torch.from_file(str(path), shared=True, size=shape[0] * shape[1], dtype=dtype).view(shape)


BACKENDS: dict[str, Allocate] = {
    "memory": _allocate_in_memory,
    "mmap": _allocate_in_file,
}


def check_storage(spec: ClassStorageConfig) -> None:
    """Values of the storage options, checked (the keys were by `class_storage_config`)."""
    for key, allowed in (("dtype", DTYPES), ("rounding", ROUNDINGS), ("backend", BACKENDS)):
        value = getattr(spec, key)
        if value not in allowed:
            raise ConfigError(
                f"head.options.storage.{key} must be one of {', '.join(allowed)}, got '{value}'."
                + suggest(str(value), list(allowed))
            )
    if spec.backend == "mmap" and not spec.directory:
        raise ConfigError("head.options.storage.backend 'mmap' needs a directory for its files (storage.directory)")


class ClassRows:
    """One rank's class rows: `weight` (C, d) and `momentum` (C, d) or None, stored as `spec`
    says; fp32 gathers and rounded write-backs of sets of rows."""

    def __init__(self, num_rows: int, dim: int, spec: ClassStorageConfig, tag: str, seed: int) -> None:
        check_storage(spec)
        self.spec, self.dtype = spec, DTYPES[spec.dtype]
        self.round = ROUNDINGS[spec.rounding]
        self.noise = RoundingNoise(seed)
        allocate = BACKENDS[spec.backend]
        self.weight = allocate((num_rows, dim), self.dtype, f"{tag}.weight.{spec.dtype}", spec)
        self.momentum = None
        if spec.momentum:
            self.momentum = allocate((num_rows, dim), self.dtype, f"{tag}.momentum.{spec.dtype}", spec)

    @property
    def follows_module(self) -> bool:
        """fp32 in memory: the arrays take the module's dtype (the plain layout of old)."""
        return self.spec.dtype == "fp32" and self.spec.backend == "memory"

    @property
    def work_dtype(self) -> torch.dtype:
        return self.weight.dtype if self.follows_module else torch.float32

    def arrays(self) -> dict[str, torch.Tensor]:
        """The stored arrays by state-dict key."""
        out = {"weight": self.weight}
        if self.momentum is not None:
            out["momentum_buffer"] = self.momentum
        return out

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> None:
        """A module's `_apply`: dtype and device for the plain layout, the device only for compact
        arrays in memory, nothing for files (they stay on the CPU)."""
        if self.spec.backend == "mmap":
            return
        move = fn if self.follows_module else (lambda t: t.to(device))
        self.weight = move(self.weight)
        if self.momentum is not None:
            self.momentum = move(self.momentum)

    def initialize(self, generator: torch.Generator, std: float) -> None:
        """Centers ~ N(0, std^2), drawn chunk by chunk in fp32 and rounded to nearest."""
        for start in range(0, len(self.weight), 65536):
            part = self.weight[start : start + 65536]
            part.copy_(torch.empty(part.shape, dtype=torch.float32).normal_(0, std, generator=generator))

    def gather(self, index: torch.Tensor, rows: torch.Tensor, buf: torch.Tensor | None) -> None:
        """rows[i] = weight[index[i]] (and buf[i] = momentum[index[i]]), upcast to the buffers' dtype
        and device."""
        index = index.to(self.weight.device)
        for start in range(0, len(index), CHUNK):
            part = index[start : start + CHUNK]
            rows[start : start + len(part)].copy_(self.weight.index_select(0, part))
            if buf is not None and self.momentum is not None:
                buf[start : start + len(part)].copy_(self.momentum.index_select(0, part))

    def scatter(self, index: torch.Tensor, rows: torch.Tensor, buf: torch.Tensor | None) -> None:
        """weight[index[i]] = rows[i] (and the momentum), rounded to the stored dtype. `rows` and
        `buf` are consumed: stochastic rounding may overwrite them."""
        index = index.to(self.weight.device)
        for start in range(0, len(index), CHUNK):
            part = index[start : start + CHUNK]
            stop = start + len(part)
            self.weight.index_copy_(0, part, self._stored(rows[start:stop]))
            if buf is not None and self.momentum is not None:
                self.momentum.index_copy_(0, part, self._stored(buf[start:stop]))

    def _stored(self, values: torch.Tensor) -> torch.Tensor:
        values = values.to(self.weight.device)
        if values.dtype == self.weight.dtype:
            return values
        return self.round(values.float(), self.dtype, self.noise)

    def load(self, key: str, value: torch.Tensor) -> None:
        """Copy a saved array in (e.g. from a checkpoint), chunk by chunk."""
        target = self.arrays()[key]
        if value.shape != target.shape:
            raise ValueError(f"{key}: checkpoint has shape {tuple(value.shape)}, this rank holds {tuple(target.shape)}")
        for start in range(0, len(target), 65536):
            target[start : start + 65536].copy_(value[start : start + 65536])
