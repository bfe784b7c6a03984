"""What happens around the training steps: logs, progress, checkpoints, evaluation, export.

A callback receives the trainer at each hook and reads what it needs from it (step, epoch,
networks, config, output directory). Callbacks run in the order they are installed;
`default_callbacks` decides which run where: every rank checkpoints its own state, the main
process alone logs, shows progress, evaluates and exports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import nn
from tqdm import tqdm

from facerec.align.pipeline import PRE_ALIGNED
from facerec.config import Config, DataConfig, ProtocolConfig
from facerec.core.files import write_json
from facerec.eval.benchmark import build_protocols, run_benchmark
from facerec.eval.protocols import HeldOutPairs
from facerec.models.card import ThresholdRecord
from facerec.pipeline import RecognitionPipeline
from facerec.train import checkpoint as ckpt
from facerec.train.logger import MetricLogger, plot_training_curves

if TYPE_CHECKING:
    import torch

    from facerec.data.datasets import FaceDataset
    from facerec.distributed import DistContext

log = logging.getLogger("facerec.train")


@runtime_checkable
class TrainerView(Protocol):
    """What a callback reads of the run it watches (facerec.train.trainer.Trainer is the one),
    named here so that callbacks depend on this interface and not on the loop's module."""

    cfg: Config
    device: torch.device
    dist: DistContext
    net: nn.Module
    out: Path
    step: int
    resumed_at: int | None

    @property
    def run_config(self) -> Config: ...
    @property
    def val_set(self) -> FaceDataset | None: ...
    @property
    def total_steps(self) -> int: ...
    @property
    def finished(self) -> bool: ...
    @property
    def checkpoint_dir(self) -> Path: ...
    def state(self) -> dict[str, Any]: ...
    def log(self, record: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class StepInfo:
    """What one training step did: its number (from 1), the epoch it belongs to, its loss (NaN
    when skipped as non-finite), the learning rate after it and the images of the global batch."""

    step: int
    epoch: int
    loss: float
    lr: float
    images: int


class Callback:
    """Hooks of a training run; each does nothing unless overridden."""

    def on_start(self, trainer: TrainerView) -> None:
        """Before the first step of this invocation (after a resume: `trainer.resumed_at`)."""

    def on_step_end(self, trainer: TrainerView, step: StepInfo) -> None:
        """After each step; the trainer's step, epoch and batch counters already count it."""

    def on_epoch_end(self, trainer: TrainerView) -> None:
        """After the last step of an epoch (and that step's on_step_end)."""

    def on_log(self, trainer: TrainerView, record: dict[str, Any]) -> None:
        """A record of metrics some part of the run reports through `trainer.log`."""

    def on_train_end(self, trainer: TrainerView, results: dict[str, Any]) -> None:
        """The steps are over (`trainer.finished`, or stopped by train.stop_after). A callback may
        add its metrics to `results`, which later callbacks and on_end see."""

    def on_end(self, trainer: TrainerView, results: dict[str, Any]) -> None:
        """The run's results are final."""

    def on_close(self, trainer: TrainerView) -> None:
        """Always last, also after an error: release files and displays."""


def default_callbacks(cfg: Config, is_main: bool) -> list[Callback]:
    t = cfg.train
    every_rank: list[Callback] = [Checkpointer(t.checkpoint_every, t.keep_checkpoints)]
    if not is_main:
        return every_rank
    shown = [ProgressBar()] if t.progress else []
    return [
        ConfigSnapshot(),
        MetricsLogger(t.log_every),
        *shown,
        *every_rank,
        PeriodicEvaluation(t.eval_every, t.eval),
        ModelExport(),
    ]


class ConfigSnapshot(Callback):
    """config.yaml in the output directory: the config the run trains with (measured values filled in)."""

    def on_start(self, trainer: TrainerView) -> None:
        trainer.out.mkdir(parents=True, exist_ok=True)
        trainer.run_config.dump(trainer.out / "config.yaml")


class MetricsLogger(Callback):
    """Step, epoch, loss, lr and images/s every `every` steps (and the last) to metrics.jsonl and
    TensorBoard; every record logged through the trainer; the results of a finished run."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.logger: MetricLogger | None = None
        self.window_start, self.window_images = 0.0, 0

    def on_start(self, trainer: TrainerView) -> None:
        # a resumed run drops the records logged after its checkpoint: it logs those steps again
        self.logger = MetricLogger(trainer.out, resumed_at=trainer.resumed_at)
        self.window_start, self.window_images = time.perf_counter(), 0

    def on_step_end(self, trainer: TrainerView, step: StepInfo) -> None:
        self.window_images += step.images
        if step.step % self.every and step.step != trainer.total_steps:
            return
        now = time.perf_counter()
        rate = self.window_images / max(now - self.window_start, 1e-9)
        self.window_start, self.window_images = now, 0
        self.write({"step": step.step, "epoch": step.epoch, "loss": step.loss, "lr": step.lr, "images_per_s": rate})

    def on_log(self, trainer: TrainerView, record: dict[str, Any]) -> None:
        self.write(record)

    def on_end(self, trainer: TrainerView, results: dict[str, Any]) -> None:
        if trainer.finished:
            self.write(results)

    def on_close(self, trainer: TrainerView) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None

    def write(self, record: dict[str, Any]) -> None:
        assert self.logger is not None, "MetricsLogger writes between on_start and on_close"
        self.logger.log(record)


class ProgressBar(Callback):
    """A bar of images trained, with rate, ETA, loss, lr and epoch."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_start(self, trainer: TrainerView) -> None:
        images = trainer.cfg.data.batch_size * trainer.dist.world_size
        self.bar = tqdm(
            total=trainer.total_steps * images,
            initial=trainer.step * images,
            unit="img",
            unit_scale=True,
            desc="training",
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,  # keep CI logs short
        )

    def on_step_end(self, trainer: TrainerView, step: StepInfo) -> None:
        if self.bar is not None:
            self.bar.update(step.images)
            self.bar.set_postfix(loss=f"{step.loss:.3f}", lr=f"{step.lr:.3g}", epoch=step.epoch, refresh=False)

    def on_train_end(self, trainer: TrainerView, results: dict[str, Any]) -> None:
        self.on_close(trainer)  # before the final evaluation, whose messages would cut through it

    def on_close(self, trainer: TrainerView) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Checkpointer(Callback):
    """This rank's checkpoint every `every` steps, at the last step and where train.stop_after
    stops the run; the newest `keep` are kept."""

    def __init__(self, every: int, keep: int) -> None:
        self.every, self.keep = every, keep
        self.saved_at: int | None = None

    def on_step_end(self, trainer: TrainerView, step: StepInfo) -> None:
        if step.step % self.every == 0 or step.step == trainer.total_steps:
            self.save(trainer)

    def on_train_end(self, trainer: TrainerView, results: dict[str, Any]) -> None:
        if self.saved_at != trainer.step:  # stopped on purpose between checkpoints: keep the work
            self.save(trainer)

    def save(self, trainer: TrainerView) -> None:
        ckpt.save_checkpoint(trainer.checkpoint_dir, trainer.step, trainer.state(), self.keep, trainer.dist.rank)
        self.saved_at = trainer.step


class PeriodicEvaluation(Callback):
    """Verification on the held-out identities (`val_accuracy`, `val_accuracy_std`,
    `val_threshold` ...) and the protocols of train.eval (`eval/<name>/<metric>`, flip-summed),
    every `every` steps (0: never) and at the end; at the end the protocol reports and the
    benchmark table (with and without flip, as `facerec benchmark` writes it) go to
    <output_dir>/eval."""

    def __init__(self, every: int, protocols: Sequence[ProtocolConfig] = (), num_pairs: int = 6000) -> None:
        self.every, self.num_pairs = every, num_pairs
        self.entries = list(protocols)
        self.protocols = build_protocols(self.entries)
        self.pipelines: dict[tuple[str, int, bool], RecognitionPipeline] = {}  # they share the trained backbone

    def on_step_end(self, trainer: TrainerView, step: StepInfo) -> None:
        if self.every and step.step % self.every == 0 and step.step < trainer.total_steps:  # the last: on_train_end
            trainer.log({"step": step.step, **self.evaluate(trainer)})

    def on_train_end(self, trainer: TrainerView, results: dict[str, Any]) -> None:
        if trainer.finished:
            results.update(self.evaluate(trainer, reports=trainer.out / "eval"))

    def evaluate(self, trainer: TrainerView, reports: Path | None = None) -> dict[str, float]:
        """The metrics of the backbone as it is now; `reports`: where protocols write theirs."""
        metrics: dict[str, float] = {}
        backbone = trainer.net["backbone"]
        # evaluating must not move the random state the next steps draw from (exact resume)
        with unchanged_random_state(), eval_mode(backbone):
            if trainer.val_set is not None:
                held_out = HeldOutPairs(trainer.val_set, self.num_pairs, seed=trainer.cfg.train.seed)
                summary = held_out.evaluate(self.pipeline(trainer, PRE_ALIGNED, 0, True))["summary"]
                metrics.update({f"val_{k}": v for k, v in summary.items()})
            if self.entries:
                flips = (False, True) if reports is not None else (True,)

                def source(detector: str, degrade: int, flip: bool) -> RecognitionPipeline:
                    return self.pipeline(trainer, detector, degrade, flip)

                bench = run_benchmark(self.entries, source, flips, reports, protocols=self.protocols)
                for row in bench.rows:
                    if row.flip:
                        name = f"{row.protocol}@{row.degrade}px" if row.degrade else row.protocol
                        metrics.update({f"eval/{name}/{k}": v for k, v in row.summary.items()})
        return metrics

    def pipeline(self, trainer: TrainerView, detector: str, degrade: int, flip: bool) -> RecognitionPipeline:
        """The trained backbone seen through `detector` ('none': aligned crops)."""
        crops = (PRE_ALIGNED, 0, True)  # the held-out check's pipeline; its model serves every variant
        if crops not in self.pipelines:
            net, size = trainer.net["backbone"], trainer.cfg.backbone.input_size
            framing = trainer.cfg.backbone.template
            self.pipelines[crops] = RecognitionPipeline.for_network(net, size, trainer.device, framing=framing)
        key = (detector, degrade, flip)
        if key not in self.pipelines:
            model = self.pipelines[crops].model
            self.pipelines[key] = RecognitionPipeline(
                model, detector, degrade=degrade, flip=flip, device=trainer.device, batch_size=256
            )
        return self.pipelines[key]


@contextlib.contextmanager
def unchanged_random_state() -> Iterator[None]:
    state = ckpt.rng_state()
    try:
        yield
    finally:
        ckpt.set_rng_state(state)


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[None]:
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


class ModelExport(Callback):
    """At the end of a finished run: model.pt (the backbone, with the threshold measured on the
    held-out identities), results.json and training_curves.png."""

    def on_end(self, trainer: TrainerView, results: dict[str, Any]) -> None:
        if not trainer.finished:
            return
        self.export(trainer, results.get("val_threshold"))
        write_json(trainer.out / "results.json", results, indent=2)
        with contextlib.suppress(Exception):  # a plot must never lose a finished run
            plot_training_curves(trainer.out / "metrics.jsonl", trainer.out / "training_curves.png")
        log.info("finished at step %d: %s", trainer.step, results)

    def export(self, trainer: TrainerView, threshold: float | None) -> None:
        from facerec.models.io import export_model

        thresholds = []
        if threshold is not None and trainer.val_set is not None:
            held_out = f"{trainer.val_set.num_classes} held-out identities of {describe_data(trainer.cfg.data)}"
            thresholds.append(ThresholdRecord(threshold, detector="none", flip=True, data=held_out))
        backbone_cfg = dataclasses.asdict(trainer.cfg.backbone)
        export_model(trainer.out / "model.pt", trainer.net["backbone"], backbone_cfg, thresholds)


def describe_data(d: DataConfig) -> str:
    """The training data in a few words, for the model card."""
    if d.source == "synthetic":
        return f"synthetic faces (seed {d.synthetic.seed}, difficulty {d.synthetic.difficulty:g})"
    return f"{d.source} {d.list_file if d.source == 'list' else d.root}"
