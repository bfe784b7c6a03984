"""The training loop: one loop for every backbone, head and loss.

The parts of a run come from `builder.build_run`; what happens around the steps (logs,
progress, checkpoints, evaluation, export) from `callbacks`. The trainer holds the position
(step, epoch, batch) and takes the steps.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from facerec.config import Config, from_dict
from facerec.data.batch_augment import augment_batch
from facerec.data.datasets import FaceDataset
from facerec.errors import TrainingError
from facerec.heads import OptimizerStep
from facerec.train import checkpoint as ckpt
from facerec.train.builder import PRECISIONS, build_run, fit_student_output
from facerec.train.callbacks import Callback, StepInfo, default_callbacks

log = logging.getLogger("facerec.train")


class Trainer:
    def __init__(self, cfg: Config, callbacks: Sequence[Callback] | None = None) -> None:
        self.parts = p = build_run(cfg)
        self.cfg, self.device, self.dist, self.net = p.config, p.device, p.dist, p.net
        self.optimizer, self.scheduler, self.scaler = p.optimizer, p.scheduler, p.scaler
        self.callbacks = list(default_callbacks(cfg, p.dist.is_main) if callbacks is None else callbacks)
        self.out = Path(cfg.train.output_dir)
        self.step, self.epoch, self.batch_in_epoch, self.bad_steps = 0, 0, 0, 0
        self.resumed_at: int | None = None  # the checkpoint's step when this invocation resumed
        self._loader: torch.utils.data.DataLoader | None = None  # made at the first epoch

    # ---- what callbacks read --------------------------------------------------------------
    @property
    def run_config(self) -> Config:
        return self.parts.run_config

    @property
    def train_set(self) -> FaceDataset:
        return self.parts.train_set

    @property
    def val_set(self) -> FaceDataset | None:
        return self.parts.val_set

    @property
    def total_steps(self) -> int:
        return self.parts.total_steps

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    @property
    def teacher_size(self) -> int:
        return self.parts.teacher.size if self.parts.teacher else 0

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def log(self, record: dict[str, Any]) -> None:
        """Report metrics (a dict with 'step') to the callbacks that keep them."""
        self._notify("on_log", record)

    # ---- the loop -----------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to the end of the schedule, or for train.stop_after steps; the run's results."""
        self.resumed_at = self.step if resume and self.resume() else None
        if self.step == 0 and self.cfg.distill.fit_output > 0:  # a resumed run has its fitted layer
            fit_student_output(self.cfg, self.net["backbone"], self.parts.train_set)
        t = self.cfg.train
        stop_at = min(self.step + t.stop_after, self.total_steps) if t.stop_after else self.total_steps
        self._notify("on_start")
        try:
            while self.step < stop_at:
                for batch in self.epoch_loader():
                    self._set_train_mode()
                    images = self.batch_images(batch)
                    loss = self.train_step(images, batch["label"], batch.get("target"))
                    self._advance(loss, images=len(images) * self.dist.world_size)
                    if self.step >= stop_at:
                        break
            results: dict[str, Any] = {"step": self.step, **({} if self.finished else {"stopped_early": True})}
            self._notify("on_train_end", results)
            self._notify("on_end", results)
        finally:
            self._loader = None  # its persistent workers end with it
            self._notify("on_close")
        if self.dist.distributed:
            torch.distributed.barrier()
        return results

    def _notify(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def _advance(self, loss: float, images: int) -> None:
        """Count the step (and the epoch it may end) and tell the callbacks."""
        self.scheduler.step()
        self.step += 1
        self.batch_in_epoch += 1
        info = StepInfo(self.step, self.epoch, loss, self.scheduler.get_last_lr()[0], images)
        epoch_ended = self.batch_in_epoch == len(self.parts.sampler)
        if epoch_ended:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self._notify("on_step_end", info)
        if epoch_ended:
            self._notify("on_epoch_end")

    def epoch_loader(self) -> torch.utils.data.DataLoader:
        """The loader over the rest of the current epoch: the batch sampler, which this process
        iterates afresh each epoch, starts at the position. The loader is made once, so its
        workers persist across epochs (starting them anew each epoch took about a second, a
        large share of a short epoch on a GPU); each sample's augmentation follows its own seed,
        not the worker's. It gets its own generator: drawing its base seed from the global RNG
        would make a loader created on resume shift the dropout masks that follow."""
        self.parts.sampler.set_position(self.epoch, self.batch_in_epoch)
        if self._loader is None:
            workers = self.cfg.data.num_workers
            self._loader = torch.utils.data.DataLoader(
                self.train_set,
                batch_sampler=self.parts.sampler,
                num_workers=workers,
                persistent_workers=workers > 0,
                pin_memory=self.device.type == "cuda",
                generator=torch.Generator().manual_seed(self.cfg.train.seed),
            )
        return self._loader

    def batch_images(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A loaded batch's images on the device, augmented there when the loader left it to the
        device (data.augment_on: device: uint8 images beside each one's draws)."""
        images = batch["image"].to(self.device, non_blocking=True)
        if "augment" in batch:
            images = augment_batch(images, batch["augment"], self.cfg.data.augment)
        return images

    def _set_train_mode(self) -> None:
        """Train mode, except BatchNorm layers whose parameters are all frozen keep their statistics."""
        self.net.train()
        frozen = set(self.parts.frozen)
        for name, module in self.net.named_modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                names = [f"{name}.{n}" for n, _ in module.named_parameters()]
                if names and all(n in frozen for n in names):
                    module.eval()

    # ---- one step -----------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = PRECISIONS[self.cfg.train.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.no_grad()
    def teacher_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """The on-the-fly teacher's L2-normalized embeddings of a training batch."""
        assert self.parts.teacher is not None and self.parts.teacher.online is not None
        return self.parts.teacher.online.embed_tensors(images)  # as precomputed targets store them

    def compute_loss(
        self, images: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        with self.autocast():
            emb = self.parts.backbone_fn(images)
        total, parts = self.parts.losses_fn(emb.float(), labels, teacher)  # margins and softmax in fp32
        return total, {k: float(v) for k, v in parts.items()}

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None = None) -> float:
        """One optimizer step; the loss, or NaN when a non-finite loss or gradient skipped it."""
        self.optimizer.zero_grad(set_to_none=True)
        images = images.to(self.device)
        if self.parts.teacher is not None and self.parts.teacher.online is not None:
            teacher = self.teacher_embeddings(images)
        teacher = teacher.to(self.device) if teacher is not None else None
        loss, parts = self.compute_loss(images, labels.to(self.device), teacher)
        value = float(loss.detach())
        if not all_ranks_true(math.isfinite(value), self.device):  # every rank skips, or none
            self._bad_step(f"loss is {value} ({', '.join(f'{k}={v:.4g}' for k, v in parts.items())})")
            return float("nan")
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip > 0 or self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.net.parameters() if p.grad is not None]
        max_norm = self.cfg.train.grad_clip if self.cfg.train.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if not torch.isfinite(grad_norm) and not self.scaler.is_enabled():
            self._bad_step(f"gradient norm is {float(grad_norm)} at loss {value:.4g}")
            return float("nan")
        self.scaler.step(self.optimizer)  # fp16: skips the step itself on inf/nan gradients
        for head in (self.net["head"], *self.net["aux"]):
            if head.owns_update:  # state kept outside the optimizer, e.g. sampled class centers
                head.after_optimizer_step(self._head_step())
        self.scaler.update()
        self.bad_steps = 0
        return value

    def _head_step(self) -> OptimizerStep:
        """This step's hyperparameters for a head that updates some of its state itself."""
        o = self.cfg.optim
        lr = o.lr * self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)  # whichever groups are frozen
        grad_scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        return OptimizerStep(lr * o.head_lr_scale, o.momentum, o.weight_decay, o.nesterov, grad_scale)

    def _bad_step(self, what: str) -> None:
        self.bad_steps += 1
        lr = self.optimizer.param_groups[0]["lr"]
        log.warning("step %d: %s at lr %.3g; update skipped", self.step, what, lr)
        if self.bad_steps >= self.cfg.train.max_bad_steps:
            raise TrainingError(
                f"training diverged: {self.bad_steps} consecutive non-finite steps (last: {what}, "
                f"step {self.step}, lr {lr:.3g}). Lower optim.lr, set train.grad_clip, add "
                "schedule.warmup_steps, or use train.precision: fp32/bf16"
            )

    # ---- checkpoints --------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": "facerec-checkpoint",
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch_in_epoch,
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "config": self.run_config.to_dict(),
            "world_size": self.dist.world_size,
            "rank": self.dist.rank,
            "head_weight_optimizer_index": self._optimizer_index(getattr(self.net["head"], "weight", None)),
        }

    def _optimizer_index(self, param: torch.Tensor | None) -> int | None:
        """Position of a parameter in the optimizer's state (for converting sharded checkpoints)."""
        flat = [p for group in self.optimizer.param_groups for p in group["params"]]
        return next((i for i, p in enumerate(flat) if p is param), None)

    def resume(self, path: Path | None = None) -> bool:
        """Restore the newest (or the given) checkpoint; False when there is none."""
        if path is None:
            found = ckpt.list_checkpoints(self.checkpoint_dir, self.dist.rank)
            if not found:
                return False
            path = found[-1]
        payload = ckpt.load_checkpoint(path)
        self._check_compatible(payload, path)
        try:
            self.net.load_state_dict(payload["net"])
            self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, ValueError) as exc:
            raise TrainingError(f"checkpoint {path} does not fit this run: {exc}") from exc
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        ckpt.set_rng_state(payload["rng"])
        self.step, self.epoch, self.batch_in_epoch = payload["step"], payload["epoch"], payload["batch"]
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def _check_compatible(self, payload: dict[str, Any], path: Path) -> None:
        if payload.get("world_size", 1) != self.dist.world_size:
            raise TrainingError(
                f"checkpoint {path} was written by {payload.get('world_size', 1)} processes, this run has "
                f"{self.dist.world_size}: convert it with `facerec checkpoint convert`"
            )
        # through the Config type, so fields added since the checkpoint read as their defaults;
        # against the run's config, whose measured values the checkpoint recorded as well
        saved, ours = from_dict(payload["config"], stored=True).to_dict(), self.run_config.to_dict()
        for key in ("backbone", "head", "aux_heads", "distill"):
            if saved[key] != ours[key]:
                raise TrainingError(
                    f"checkpoint {path} was made with a different '{key}' config; "
                    "resume with the same config or start a new output_dir"
                )


def all_ranks_true(flag: bool, device: torch.device) -> bool:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
    return bool(value.item())


def train(cfg: Config, resume: bool = False) -> dict[str, Any]:
    try:
        return Trainer(cfg).fit(resume=resume)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
