"""Metrics to JSONL (and TensorBoard when installed), and a loss-curve plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facerec.core.files import write_text


class MetricLogger:
    def __init__(self, directory: Path, resumed_at: int | None = None) -> None:
        """A new metrics file, or (`resumed_at`: the checkpoint's step) the old one without the
        records logged after that checkpoint: the resumed run logs those steps again."""
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "metrics.jsonl"
        if resumed_at is not None and self.path.is_file():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resumed_at]
            write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.file = self.path.open("a" if resumed_at is not None else "w")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(directory / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def log(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics file; a line cut short (its writer was killed) is skipped."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_training_curves(metrics_path: Path, out_png: Path) -> Path | None:
    """Loss (and validation accuracy when present) against step, as a PNG."""
    from facerec.core.plots import pyplot, save_figure

    records = read_metrics(metrics_path)
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_accuracy" in r]
    if not train:
        return None
    fig, ax = pyplot().subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if val:
        ax2 = ax.twinx()
        ax2.plot(
            [r["step"] for r in val],
            [100 * r["val_accuracy"] for r in val],
            "o-",
            color="C1",
            label="validation accuracy (%)",
        )
        ax2.set_ylabel("verification accuracy (%)")
    fig.legend(loc="upper right")
    return save_figure(fig, out_png, dpi=100)
