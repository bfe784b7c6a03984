"""The 'auto' runtime: a torch model keeps its torch network and also runs on onnxruntime where
that is faster, chosen per call by the batch size.

On a CPU onnxruntime is faster than torch for single faces and slower for large batches (the
"ONNX export" section of docs/benchmarks.md). The crossover is measured, not guessed: for the
models facerec ships it is recorded in `weights/runtime_speed.json` by
`python benchmarks/onnx_speed.py --record`; any other model is measured once, on first use, and
the result cached beside its ONNX export. Batches smaller than the crossover run on
onnxruntime, the others on torch. Autograd always runs on torch (`RecognitionModel.net` stays
the torch network), so gradients, weight copies and model files are unaffected.

A model auto cannot put on onnxruntime (one that is not a torch network, a GPU device, onnxruntime not
installed, an export that fails) runs on torch, and the log says why.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facerec.core.files import write_json
from facerec.errors import FacerecError
from facerec.models.card import ModelCard
from facerec.models.onnx_file import OnnxNet, cached_onnx_file

log = logging.getLogger(__name__)

SPEED_FILE = Path(__file__).parent / "weights" / "runtime_speed.json"  # recorded crossovers, by digest
BATCHES = (1, 2, 4, 8, 16, 32)  # the batch sizes measured
FIRST_USE_REPEATS = 10  # timed calls per batch size and runtime when a model is measured on first use


@dataclass
class RuntimeChoice:
    """onnxruntime for batches smaller than `crossover` (None: every batch), torch for the rest."""

    onnx: OnnxNet
    crossover: int | None
    source: str  # where the crossover comes from (a recorded measurement, or measured now)

    def uses_onnx(self, batch: int) -> bool:
        return self.crossover is None or batch < self.crossover

    def describe(self) -> str:
        if self.crossover is None:
            return f"onnxruntime at every batch size ({self.source})"
        return f"onnxruntime below batch {self.crossover}, torch from it ({self.source})"


# ---- measuring ---------------------------------------------------------------------------------
@torch.no_grad()
def faces_per_second(net: nn.Module, size: int, batch: int, repeats: int) -> float:
    """Faces per second of one network call on `batch` random crops: the median of `repeats`
    timed calls after a warm-up call. One runtime at a time: taking turns call by call was
    tried and is unfair, as onnxruntime's threads keep spinning into torch's next call."""
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
    net(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def measure_speeds(
    torch_net: nn.Module,
    onnx_net: nn.Module,
    size: int,
    batches: Sequence[int] = BATCHES,
    repeats: int = FIRST_USE_REPEATS,
    stop_at_crossover: bool = False,
) -> dict[str, Any]:
    """Faces per second of both runtimes at each batch size (one runtime at a time), and the
    crossover: the smallest measured batch at which torch is at least as fast (None: none).
    `stop_at_crossover` skips the larger batches once it is found. Timed in a worker thread, as
    the service and the pipeline's callers run networks: on the shared 2-core VM under load,
    torch called from the thread that built the model ran 10-100x slower than from another
    thread, which made onnxruntime look faster everywhere."""
    with ThreadPoolExecutor(1, thread_name_prefix="facerec-speed") as worker:
        return worker.submit(_measure, torch_net.eval(), onnx_net, size, batches, repeats, stop_at_crossover).result()


def _measure(
    torch_net: nn.Module,
    onnx_net: nn.Module,
    size: int,
    batches: Sequence[int],
    repeats: int,
    stop_at_crossover: bool,
) -> dict[str, Any]:
    speeds: dict[str, Any] = {"batches": [], "torch": [], "onnx": [], "crossover": None}
    for batch in sorted(batches):
        on_torch = faces_per_second(torch_net, size, batch, repeats)
        on_onnx = faces_per_second(onnx_net, size, batch, repeats)
        for key, value in (("batches", batch), ("torch", round(on_torch, 1)), ("onnx", round(on_onnx, 1))):
            speeds[key].append(value)
        if on_torch >= on_onnx and speeds["crossover"] is None:
            speeds["crossover"] = batch
            if stop_at_crossover:
                break
    return speeds


def speed_record(speeds: dict[str, Any], card: ModelCard, threads: int, command: str) -> dict[str, Any]:
    """A measurement as `runtime_speed.json` keeps it: what was measured, where and how."""
    return {
        "model": card.name or card.architecture,
        **speeds,
        "threads": threads,
        "load_average": [round(v, 2) for v in os.getloadavg()],  # a neighbor's load slows torch most
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "torch_version": torch.__version__,
        "onnxruntime_version": _version("onnxruntime"),
        "date": date.today().isoformat(),
        "command": command,
    }


def record_speeds(card: ModelCard, record: dict[str, Any], path: Path | None = None) -> Path:
    """Keep `record` as the measurement of `card`'s model (by digest) in `path` (SPEED_FILE)."""
    path = path or SPEED_FILE
    records = read_records(path)
    records[card.digest] = record
    return write_json(path, dict(sorted(records.items())), indent=1)


def read_records(path: Path | None = None) -> dict[str, Any]:
    """The measurements kept in `path` (SPEED_FILE: the recorded ones), by model digest."""
    path = path or SPEED_FILE
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise FacerecError(f"unreadable runtime speed records {path}: {exc}") from exc


def _version(package: str) -> str:
    try:
        return str(importlib.import_module(package).__version__)
    except ImportError:
        return "absent"


# ---- choosing ----------------------------------------------------------------------------------
def auto_choice(net: nn.Module, card: ModelCard, device: torch.device) -> RuntimeChoice | None:
    """The onnxruntime side of the auto runtime for a torch model, or None (torch alone) with the
    reason logged."""
    name, reason, level = card.name or card.short_id, _torch_only_reason(net, card, device), logging.INFO
    recorded = read_records().get(card.digest)
    if reason is None and recorded is not None and recorded["crossover"] == 1:  # no export needed
        reason = f"it was at least as fast at every measured batch size ({_recorded_source(recorded)})"
    if reason is None:
        try:
            onnx = OnnxNet(cached_onnx_file(net, card), device)
        except FacerecError as exc:  # unexpected for a torch network: a warning, and torch serves
            reason, level = f"it could not be exported to ONNX ({exc})", logging.WARNING
        else:
            choice = _choice(net, onnx, card)
            if choice.crossover != 1:
                log.info("runtime auto for model %s: %s", name, choice.describe())
                return choice
            reason = f"it was at least as fast at every measured batch size ({choice.source})"
    log.log(level, "runtime auto for model %s: torch, because %s", name, reason)
    return None


def _torch_only_reason(net: nn.Module, card: ModelCard, device: torch.device) -> str | None:
    if not getattr(net, "exportable", True):
        return "it is not a torch network that can be exported to ONNX"
    if device.type != "cpu":
        return f"onnxruntime's speed is measured on the CPU only, and the device is {device}"
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return "onnx/onnxruntime are not installed (pip install 'facerec[onnx]')"
    if not card.digest:
        return "the model has no content digest to cache its ONNX export and speed under"
    return None


def _choice(net: nn.Module, onnx: OnnxNet, card: ModelCard) -> RuntimeChoice:
    """The crossover recorded for this model, else the one cached from an earlier first use,
    else measured now (once) and cached."""
    recorded = read_records().get(card.digest)
    if recorded is not None:
        return RuntimeChoice(onnx, recorded["crossover"], _recorded_source(recorded))
    cached = onnx.path.with_suffix(".speed.json")
    if cached.is_file():
        found = read_records(cached)
        return RuntimeChoice(onnx, found["crossover"], f"measured on first use {found['date']}")
    log.info("runtime auto: measuring torch against onnxruntime for model %s (once)", card.short_id)
    speeds = measure_speeds(net, onnx, card.input_size, repeats=FIRST_USE_REPEATS, stop_at_crossover=True)
    write_json(cached, speed_record(speeds, card, torch.get_num_threads(), "first use"), indent=1)
    return RuntimeChoice(onnx, speeds["crossover"], f"measured on first use {date.today().isoformat()}")


def _recorded_source(record: dict[str, Any]) -> str:
    return f"recorded {record['date']}: {record['command']}"


__all__ = ["RuntimeChoice", "auto_choice", "measure_speeds", "record_speeds", "speed_record"]
