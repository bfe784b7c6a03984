"""The training loop: one loop for every backbone, head and loss."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from facerec.config import Config, from_dict
from facerec.data import build_datasets
from facerec.data.datasets import FaceDataset
from facerec.data.samplers import PKBatchSampler, ResumableBatchSampler, ShuffleBatchSampler
from facerec.data.transforms import Augment
from facerec.distill.losses import DistillationLoss
from facerec.distill.targets import attach_targets, load_targets, teacher_threshold
from facerec.distributed import all_reduce_sum_hook, init_from_env
from facerec.errors import ConfigError, TrainingError
from facerec.eval.embed import embed_batches, embed_dataset
from facerec.eval.verification import verify_embeddings
from facerec.heads import PAIRWISE_LOSSES, build_head
from facerec.heads.partial_fc import PartialFC
from facerec.models import build_backbone
from facerec.models.io import export_model, load_model_file
from facerec.train import checkpoint as ckpt
from facerec.train.logger import MetricLogger, plot_training_curves
from facerec.train.optim import build_optimizer, build_scheduler

log = logging.getLogger("facerec.train")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is '{name}' but CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def matches(name: str, pattern: str) -> bool:
    """fnmatch, where a plain name also matches everything below it ('backbone' -> 'backbone.x')."""
    return fnmatch.fnmatchcase(name, pattern) or name.startswith(pattern.rstrip(".") + ".")


class Trainer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        t = cfg.train
        if t.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got '{t.precision}'")
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        seed_everything(t.seed)
        self.device = pick_device(t.device)
        self.dist = init_from_env(self.device)
        if self.device.type == "cuda" and self.dist.distributed:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.out = Path(t.output_dir)
        self.train_set, self.val_set = build_datasets(cfg.data, cfg.backbone.input_size, t.seed, progress=t.progress)
        self.train_set.augment = Augment(cfg.data.augment)
        self.teacher_size = self._attach_teacher()
        self.sampler = self._build_sampler(self.train_set)
        self.net = self._build_net().to(self.device)
        if t.init_from:
            self._init_from(t.init_from)
        self.frozen = self._freeze()
        self.backbone_fn, self.losses_fn = self._parallel_wrappers()
        self.optimizer = build_optimizer(self._param_groups(), cfg.optim)
        self.total_steps = t.max_steps or t.epochs * len(self.sampler)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        self.step, self.epoch, self.bad_steps = 0, 0, 0

    # ---- construction -------------------------------------------------------------------
    def _build_sampler(self, dataset: FaceDataset) -> ResumableBatchSampler:
        d, seed = self.cfg.data, self.cfg.train.seed
        names = [self.cfg.head.name] + [a.name for a in self.cfg.aux_heads]
        pairwise = any(n in PAIRWISE_LOSSES for n in names)
        if pairwise and d.sampler != "pk":
            raise ConfigError(
                f"loss '{next(n for n in names if n in PAIRWISE_LOSSES)}' compares images of one "
                "identity inside a batch: set data.sampler: pk"
            )
        world = self.dist.world_size  # data.batch_size is per process; ranks share one global batch
        sampler: ResumableBatchSampler
        if d.sampler == "pk":
            k = d.images_per_identity_in_batch
            sampler = PKBatchSampler(dataset.labels, d.batch_size * world, k, seed, require_pairs=pairwise)
        elif d.sampler == "random":
            sampler = ShuffleBatchSampler(len(dataset), d.batch_size * world, seed)
        else:
            raise ConfigError(f"data.sampler must be 'random' or 'pk', got '{d.sampler}'")
        return RankSlice(sampler, self.dist.rank, world) if world > 1 else sampler

    def _build_net(self) -> nn.ModuleDict:
        m, n = self.cfg.backbone, self.train_set.num_classes
        backbone = build_backbone(m.name, m.embedding_size, self.cfg.backbone.input_size, m.options)
        head = build_head(self.cfg.head.name, m.embedding_size, n, self.cfg.head.options)
        aux = nn.ModuleList(build_head(a.name, m.embedding_size, n, a.options) for a in self.cfg.aux_heads)
        parts = {"backbone": backbone, "head": head, "aux": aux}
        if self.teacher_size:
            k = self.cfg.distill
            parts["distill"] = DistillationLoss(m.embedding_size, self.teacher_size, k.terms, k.threshold, k.width)
        return nn.ModuleDict(parts)

    def _attach_teacher(self) -> int:
        """Teacher embeddings for each training image, or the teacher network that computes them
        on the fly, when distilling; their size (0: no distillation)."""
        k = self.cfg.distill
        self.teacher_net: nn.Module | None = None
        if not k.targets and not k.teacher:
            if self.cfg.head.name == "none" and not self.cfg.aux_heads:
                raise ConfigError(
                    "head 'none' trains nothing by itself: set distill.targets or distill.teacher (or aux_heads)"
                )
            return 0
        if k.targets and k.teacher:
            raise ConfigError("set distill.targets (precomputed) or distill.teacher (on the fly), not both")
        if not k.terms:
            raise ConfigError("distillation is on but distill.terms is empty")
        if k.targets:
            size = attach_targets(self.train_set, load_targets(k.targets, k.flip), k.center)
            if "evaluation" in k.terms and k.threshold is None:
                targets = self.train_set.targets.double().numpy()  # type: ignore[attr-defined]
                k.threshold = teacher_threshold(targets, np.asarray(self.train_set.labels))
                log.info("the teacher's threshold on its training targets: cosine %.4f", k.threshold)
            return size
        if "evaluation" in k.terms and k.threshold is None:
            raise ConfigError("an on-the-fly teacher's threshold is not known beforehand: set distill.threshold")
        if k.center:
            raise ConfigError("distill.center needs precomputed targets (the mean of all teacher embeddings)")
        net, size, _ = load_model_file(k.teacher, self.device)
        self.teacher_net, self.teacher_input = net.requires_grad_(False), size
        with torch.no_grad():
            return int(net(torch.zeros(2, 3, size, size, device=self.device)).shape[1])

    @torch.no_grad()
    def teacher_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """The on-the-fly teacher's L2-normalized embeddings of a training batch (resized to its
        input; with the mirrored batch added when distill.flip)."""
        assert self.teacher_net is not None  # loaded in eval mode; it is not part of self.net
        size = self.teacher_input
        if images.shape[-1] != size or images.shape[-2] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return embed_batches(self.teacher_net, images, self.cfg.distill.flip)  # as distill-targets stores them

    def _parallel_wrappers(self) -> tuple[nn.Module, nn.Module]:
        """Modules the step calls: the plain ones, or DDP wrappers when several processes train.

        A sharded head (Partial FC) returns the mean loss over the global batch on every rank, so
        the backbone's gradients are summed across ranks (not averaged). A replicated head
        returns a local mean: backbone and head gradients are averaged, DDP's default.
        """
        losses = LossTerms(
            self.cfg, self.net["head"], self.net["aux"], self.net["distill"] if self.teacher_size else None
        )
        if not self.dist.distributed:
            return self.net["backbone"], losses
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        backbone = DDP(self.net["backbone"], device_ids=ids)
        if isinstance(self.net["head"], PartialFC):
            if any(p.requires_grad for p in self.net["aux"].parameters()):
                raise ConfigError("auxiliary losses with parameters (center loss) are not supported with partial_fc")
            backbone.register_comm_hook(None, all_reduce_sum_hook)
            return backbone, losses
        if any(p.requires_grad for p in losses.parameters()):
            return backbone, DDP(losses, device_ids=ids)
        return backbone, losses

    def _init_from(self, spec: str) -> None:
        """Start from another run's weights (fine-tuning): a training checkpoint (backbone, and
        the head if its shape fits), or an exported model file / 'default' (backbone only)."""
        state = ckpt.initial_weights(spec)
        own = self.net.state_dict()
        wanted = {k: v for k, v in state.items() if k.startswith("backbone.") or self.cfg.train.init_head}
        usable = {k: v for k, v in wanted.items() if k in own and own[k].shape == v.shape}
        skipped = sorted(set(wanted) - set(usable))
        if not any(k.startswith("backbone.") for k in usable):
            raise TrainingError(f"{spec}: no backbone weight fits model '{self.cfg.backbone.name}'")
        self.net.load_state_dict(usable, strict=False)
        if skipped:
            log.warning(
                "init_from %s: %d tensors not loaded (shape or name differ), e.g. %s", spec, len(skipped), skipped[0]
            )

    def _freeze(self) -> list[str]:
        t = self.cfg.train
        frozen = []
        for name, p in self.net.named_parameters():
            if any(matches(name, pat) for pat in t.freeze) and not any(matches(name, pat) for pat in t.unfreeze):
                p.requires_grad_(False)
                frozen.append(name)
        if t.freeze and not frozen:
            raise ConfigError(
                f"train.freeze patterns {t.freeze} match no parameter (names look like "
                f"'{next(iter(dict(self.net.named_parameters())))}')"
            )
        if frozen and len(frozen) == len(list(self.net.parameters())):
            raise ConfigError("train.freeze freezes every parameter: nothing left to train")
        return frozen

    def _param_groups(self) -> list[dict[str, Any]]:
        o = self.cfg.optim
        groups = []
        parts = (("backbone", 1.0), ("head", o.head_lr_scale), ("aux", o.head_lr_scale), ("distill", o.head_lr_scale))
        for part, scale in parts:
            if part not in self.net:
                continue
            params = [p for p in self.net[part].parameters() if p.requires_grad]
            if params:
                groups.append({"params": params, "lr": o.lr * scale})
        return groups

    def _set_train_mode(self) -> None:
        """Train mode, except BatchNorm layers whose parameters are all frozen keep their statistics."""
        self.net.train()
        frozen = set(self.frozen)
        for name, module in self.net.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                names = [f"{name}.{n}" for n, _ in module.named_parameters()]
                if names and all(n in frozen for n in names):
                    module.eval()

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
            "config": self.cfg.to_dict(),
            "world_size": self.dist.world_size,
            "rank": self.dist.rank,
            "head_weight_optimizer_index": self._optimizer_index(getattr(self.net["head"], "weight", None)),
        }

    def _optimizer_index(self, param: torch.Tensor | None) -> int | None:
        """Position of a parameter in the optimizer's state (for converting sharded checkpoints)."""
        flat = [p for group in self.optimizer.param_groups for p in group["params"]]
        return next((i for i, p in enumerate(flat) if p is param), None)

    def save(self) -> Path:
        return ckpt.save_checkpoint(
            self.out / "checkpoints", self.step, self.state(), self.cfg.train.keep_checkpoints, self.dist.rank
        )

    def resume(self, path: Path | None = None) -> bool:
        """Restore the newest (or the given) checkpoint; False when there is none."""
        if path is None:
            found = ckpt.list_checkpoints(self.out / "checkpoints", self.dist.rank)
            if not found:
                return False
            path = found[-1]
        payload = ckpt.load_checkpoint(path)
        if payload.get("world_size", 1) != self.dist.world_size:
            raise TrainingError(
                f"checkpoint {path} was written by {payload.get('world_size', 1)} processes, this run has "
                f"{self.dist.world_size}: convert it with `facerec checkpoint convert`"
            )
        # through the Config type, so fields added since the checkpoint read as their defaults
        saved = from_dict(payload["config"], stored=True).to_dict()
        for key in ("backbone", "head", "aux_heads", "distill"):
            if saved[key] != self.cfg.to_dict()[key]:
                raise TrainingError(
                    f"checkpoint {path} was made with a different '{key}' config; "
                    "resume with the same config or start a new output_dir"
                )
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

    # ---- one step -----------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = PRECISIONS[self.cfg.train.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def compute_loss(
        self, images: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        with self.autocast():
            emb = self.backbone_fn(images)
        total, parts = self.losses_fn(emb.float(), labels, teacher)  # margins and softmax in fp32
        return total, {k: float(v) for k, v in parts.items()}

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None = None) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        images = images.to(self.device)
        if self.teacher_net is not None:
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
        head = self.net["head"]
        if isinstance(head, PartialFC):  # sampled class centers: updated outside the optimizer
            o = self.cfg.optim
            head.sparse_step(
                self.optimizer.param_groups[0]["lr"] * o.head_lr_scale,
                o.momentum,
                o.weight_decay,
                grad_scale=self.scaler.get_scale() if self.scaler.is_enabled() else 1.0,
                nesterov=o.nesterov,
            )
        self.scaler.update()
        self.bad_steps = 0
        return value

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

    # ---- the loop -----------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        self.batch_in_epoch = 0
        resumed = resume and self.resume()
        main = self.dist.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.cfg.dump(self.out / "config.yaml")
        logger = MetricLogger(self.out, resumed_at=self.step if resumed else None) if main else None
        bar = self._progress_bar(enabled=main and self.cfg.train.progress)
        stop_at = self.step + self.cfg.train.stop_after if self.cfg.train.stop_after else self.total_steps
        self._window = (time.perf_counter(), 0)
        try:
            while self.step < min(stop_at, self.total_steps):
                for images, labels, *teacher in self._epoch_loader():  # teacher: embeddings when distilling
                    self._set_train_mode()
                    loss = self.train_step(images, labels, teacher[0] if teacher else None)
                    self.scheduler.step()
                    self.step += 1
                    self.batch_in_epoch += 1
                    bar.update(len(labels) * self.dist.world_size)
                    lr = self.scheduler.get_last_lr()[0]
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}", epoch=self.epoch, refresh=False)
                    self._after_step(loss, len(labels), logger)
                    if self.step >= min(stop_at, self.total_steps):
                        break
        finally:
            bar.close()
        if self.step < self.total_steps:  # stopped early on purpose (train.stop_after): keep the work
            self.save()
            if logger is not None:
                logger.close()
            return {"step": self.step, "stopped_early": True}
        results = {"step": self.step, **self.evaluate_prefixed()} if main else {"step": self.step}
        if logger is not None:
            logger.log(results)
            logger.close()
            self.finish(results)
        if self.dist.distributed:
            torch.distributed.barrier()
        return results

    def _progress_bar(self, enabled: bool) -> tqdm:
        images = self.cfg.data.batch_size * self.dist.world_size
        return tqdm(
            total=self.total_steps * images,
            initial=self.step * images,
            unit="img",
            unit_scale=True,
            desc="training",
            disable=not enabled,
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,  # keep CI logs short
        )

    def _epoch_loader(self) -> torch.utils.data.DataLoader:
        """The loader over the rest of the current epoch. It gets its own generator: drawing its
        base seed from the global RNG would make a loader created on resume shift the dropout
        masks that follow."""
        self.sampler.set_position(self.epoch, self.batch_in_epoch)
        return torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=self.sampler,
            num_workers=self.cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.train.seed),
        )

    def _after_step(self, loss: float, batch: int, logger: MetricLogger | None) -> None:
        """Logging, epoch bookkeeping, checkpoints and periodic evaluation after a step."""
        t = self.cfg.train
        start, seen = self._window
        seen += batch * self.dist.world_size
        if logger is not None and (self.step % t.log_every == 0 or self.step == self.total_steps):
            now = time.perf_counter()
            lr = self.scheduler.get_last_lr()[0]
            rate = seen / max(now - start, 1e-9)
            logger.log({"step": self.step, "epoch": self.epoch, "loss": loss, "lr": lr, "images_per_s": rate})
            start, seen = now, 0
        self._window = (start, seen)
        if self.batch_in_epoch == len(self.sampler):
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        if self.step % t.checkpoint_every == 0 or self.step == self.total_steps:
            self.save()
        if t.eval_every and self.step % t.eval_every == 0 and logger is not None:
            logger.log({"step": self.step, **self.evaluate_prefixed()})

    def evaluate_prefixed(self) -> dict[str, float]:
        if self.val_set is None:
            return {}
        res = self.evaluate(self.val_set)
        return {f"val_{k}": v for k, v in res.items()}

    def evaluate(self, dataset: FaceDataset, num_pairs: int = 6000) -> dict[str, float]:
        """10-fold verification accuracy on random pairs of held-out identities (flip TTA)."""
        emb = embed_dataset(self.net["backbone"], dataset, 256, self.device, flip=True)
        res = verify_embeddings(emb, dataset.labels, num_pairs, seed=self.cfg.train.seed)
        return {"accuracy": res.accuracy, "accuracy_std": res.std, "threshold": float(np.mean(res.thresholds))}

    def finish(self, results: dict[str, Any]) -> None:
        m = self.cfg.backbone
        export_model(
            self.out / "model.pt",
            self.net["backbone"],
            {"name": m.name, "embedding_size": m.embedding_size, "options": m.options},
            self.cfg.backbone.input_size,
            threshold=results.get("val_threshold"),
        )
        (self.out / "results.json").write_text(json.dumps(results, indent=2))
        with contextlib.suppress(Exception):  # a plot must never lose a finished run
            plot_training_curves(self.out / "metrics.jsonl", self.out / "training_curves.png")
        log.info("finished at step %d: %s", self.step, results)


class LossTerms(nn.Module):
    """The head plus the weighted auxiliary losses: (total, detached parts by name)."""

    def __init__(self, cfg: Config, head: nn.Module, aux: nn.ModuleList, distill: nn.Module | None = None) -> None:
        super().__init__()
        self.names = [cfg.head.name] + [a.name for a in cfg.aux_heads]
        self.weights = [cfg.head.weight] + [a.weight for a in cfg.aux_heads]
        self.terms = nn.ModuleList([head, *aux])
        self.distill = distill

    def forward(
        self, emb: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {n: w * term(emb, labels) for n, w, term in zip(self.names, self.weights, self.terms, strict=True)}
        if self.distill is not None and teacher is not None:
            parts.update(self.distill(emb, teacher))
        return sum(parts.values()), {k: v.detach() for k, v in parts.items()}


class RankSlice:
    """This rank's contiguous share of every global batch of a resumable batch sampler."""

    def __init__(self, sampler: ResumableBatchSampler, rank: int, world_size: int) -> None:
        self.sampler, self.rank, self.world_size = sampler, rank, world_size

    def set_position(self, epoch: int, batch: int = 0) -> None:
        self.sampler.set_position(epoch, batch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.sampler:
            per = len(batch) // self.world_size
            yield batch[self.rank * per : (self.rank + 1) * per]


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
