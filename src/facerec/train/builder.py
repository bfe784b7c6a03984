"""The parts of a training run, built from its config: data, networks and their optimization.

`build_run` changes neither the config it is given nor the datasets it builds: what the run
measures (the teacher's threshold) is kept in the parts, and the training images are a view
that carries the augmentation and the teacher's embeddings. Random draws happen in a fixed
order (seed, datasets, teacher, networks): exact resume and reproducible runs depend on it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from facerec.config import Config, DistillConfig, TrainConfig
from facerec.core.device import pick_device
from facerec.core.geometry import FRAMINGS, framing_points
from facerec.data import build_datasets
from facerec.data.datasets import FaceDataset, ImageAugmenter, PreloadedImages
from facerec.data.pose_augment import pose_augmenter
from facerec.data.samplers import PKBatchSampler, ResumableBatchSampler, ShuffleBatchSampler
from facerec.data.transforms import PLAIN_WARP_MAX_SCALE, Augment, draw_augment, to_tensor
from facerec.distill.losses import DistillationLoss
from facerec.distill.refit import fit_output_layer, output_layer
from facerec.distill.targets import centered, load_targets, targets_of, teacher_threshold
from facerec.distributed import DistContext, all_reduce_sum_hook, init_from_env
from facerec.errors import ConfigError, TrainingError
from facerec.heads import Head, build_head, head_type
from facerec.models import build_backbone
from facerec.pipeline import RecognitionPipeline
from facerec.train import checkpoint as ckpt
from facerec.train.optim import build_optimizer, build_scheduler

log = logging.getLogger("facerec.train")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AUGMENT_ON = ("loader", "device")


class TrainingImages(FaceDataset):
    """The training images as the loop reads them, item `(index, seed)`: augmented with that
    seed, with the teacher's embedding of each image when distilling. A view: the dataset it
    shows is untouched. An item is a dict: `image`, `label`, `target` (distilling) and, when the
    augmentation runs on the device, `augment` (the image's draws) beside the uint8 image."""

    def __init__(
        self,
        base: FaceDataset,
        augment: Augment,
        targets: torch.Tensor | None = None,
        image_augment: ImageAugmenter | None = None,
        on_device: bool = False,
    ) -> None:
        super().__init__(base.input_size)
        self.base, self.labels, self.class_names = base, base.labels, base.class_names
        self.template = base.template
        self.augment, self.targets, self.image_augment = augment, targets, image_augment
        self.on_device = on_device

    def load(self, index: int) -> np.ndarray:
        return self.base.load(index)

    def image(self, index: int) -> np.ndarray:
        return self.base.image(index)

    def describe(self, index: int) -> str:
        return self.base.describe(index)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:  # type: ignore[override]
        """Without a seed, the image as stored (no augmentation)."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        rng = np.random.default_rng(seed) if seed is not None else None
        if self.image_augment is not None and rng is not None:
            img = self.model_crop(self.image_augment(self.load(index), index, rng))
        else:
            img = self.image(index)
        sample: dict[str, Any] = {"label": int(self.labels[index])}
        if rng is None:
            sample["image"] = to_tensor(img)
        elif self.on_device:
            sample["image"] = torch.from_numpy(np.array(img)).permute(2, 0, 1)  # a copy: may be read-only
            sample["augment"] = torch.from_numpy(draw_augment(self.augment.config, self.input_size, rng).row())
        else:
            sample["image"] = to_tensor(self.augment(img, rng))
        if self.targets is not None:
            sample["target"] = self.targets[index]
        return sample


@dataclass
class Teacher:
    """What distillation needs: the embedding size, the threshold of the 'evaluation' term, and
    either each training image's embedding (precomputed) or the network that computes it."""

    size: int
    threshold: float | None
    targets: torch.Tensor | None = None
    online: RecognitionPipeline | None = None  # embeds each augmented batch, resized to its input


@dataclass
class RunParts:
    """Everything a training run is made of; `config` is the caller's, unchanged."""

    config: Config
    device: torch.device
    dist: DistContext
    train_set: TrainingImages
    val_set: FaceDataset | None
    teacher: Teacher | None
    net: nn.ModuleDict  # backbone, head, aux (and distill): what is checkpointed
    frozen: list[str]
    sampler: ResumableBatchSampler | RankSlice
    backbone_fn: nn.Module  # the modules a step calls: net's, or their DDP wrappers
    losses_fn: LossTerms | nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    total_steps: int

    @property
    def run_config(self) -> Config:
        """The config as this run trains: the caller's, with the values the run measured filled
        in (what config.yaml and checkpoints record, so a rerun from them trains the same)."""
        if self.teacher is None or self.teacher.threshold == self.config.distill.threshold:
            return self.config
        distill = dataclasses.replace(self.config.distill, threshold=self.teacher.threshold)
        return dataclasses.replace(self.config, distill=distill)


def backbone_template(cfg: Config) -> np.ndarray | None:
    """The landmarks of the backbone's crop framing; None for the ArcFace template."""
    framing = cfg.backbone.template
    if framing not in FRAMINGS:
        raise ConfigError(f"backbone.template must be one of {', '.join(FRAMINGS)}, got '{framing}'")
    return None if framing == "arcface" else framing_points(framing, cfg.backbone.input_size)


def check_seeds(cfg: Config) -> None:
    """Every seed of a run is a non-negative integer (numpy's generators take no other)."""
    seeds = {
        "train.seed": cfg.train.seed,
        "data.val_seed": cfg.data.val_seed,
        "data.synthetic.seed": cfg.data.synthetic.seed,
    }
    for key, value in seeds.items():
        if value is not None and value < 0:
            raise ConfigError(f"{key} must be a non-negative integer, got {value}")


def build_run(cfg: Config) -> RunParts:
    t = cfg.train
    if t.precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got '{t.precision}'")
    check_seeds(cfg)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    seed_everything(t.seed)
    device, dist = join_process_group(t.device)
    split_seed = t.seed if cfg.data.val_seed is None else cfg.data.val_seed
    data, val_set = build_datasets(cfg.data, cfg.backbone.input_size, split_seed, t.progress, backbone_template(cfg))
    teacher = build_teacher(cfg, data, device)
    check_fit_output(cfg, teacher)
    train_set = training_images(cfg, data, teacher)
    sampler = build_sampler(cfg, train_set.labels, dist)
    net = build_net(cfg, train_set.num_classes, teacher).to(device)
    if t.init_from:
        init_from(net, t.init_from, cfg)
    if cfg.distill.fit_output > 0:
        output_layer(net["backbone"])  # refused now, not after the images are loaded
    frozen = freeze(net, t)
    losses = LossTerms(cfg, net["head"], net["aux"], net["distill"] if teacher else None)
    backbone_fn, losses_fn = parallel_wrappers(net["backbone"], losses, device, dist)
    optimizer = build_optimizer(param_groups(net, cfg), cfg.optim)
    total_steps = t.max_steps or t.epochs * len(sampler)
    scheduler = build_scheduler(optimizer, cfg.schedule, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
    return RunParts(
        cfg, device, dist, train_set, val_set, teacher, net, frozen, sampler, backbone_fn, losses_fn,
        optimizer, scheduler, scaler, total_steps,
    )  # fmt: skip


def training_images(cfg: Config, data: FaceDataset, teacher: Teacher | None) -> TrainingImages:
    d = cfg.data
    if d.augment_on not in AUGMENT_ON:
        raise ConfigError(f"data.augment_on must be one of {', '.join(AUGMENT_ON)}, got '{d.augment_on}'")
    on_device = d.augment_on == "device"
    if on_device and d.augment.scale > PLAIN_WARP_MAX_SCALE:
        raise ConfigError(
            f"data.augment.scale above {PLAIN_WARP_MAX_SCALE} is supersampled in the loader; on the device it would "
            "alias: set data.augment_on: loader or a smaller scale"
        )
    image_augment = turn_faces(cfg, data, teacher)
    if d.preload:
        if image_augment is not None:
            raise ConfigError(
                "data.preload keeps the images at the input size, but data.augment.pose3d turns the stored image "
                "(its landmarks are in its own pixels): set one of them off"
            )
        data = PreloadedImages(data, d.num_workers, cfg.train.progress)
    targets = teacher.targets if teacher else None
    return TrainingImages(data, Augment(d.augment), targets, image_augment, on_device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def join_process_group(device_name: str) -> tuple[torch.device, DistContext]:
    """The device and this process's rank: one GPU per process when several train together."""
    device = pick_device(device_name)
    dist = init_from_env(device)
    if device.type == "cuda" and dist.distributed:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return device, dist


# ---- distillation -----------------------------------------------------------------------
def check_fit_output(cfg: Config, teacher: Teacher | None) -> None:
    if cfg.distill.fit_output <= 0:
        return
    if teacher is None or teacher.targets is None:
        raise ConfigError("distill.fit_output fits the student to precomputed teacher embeddings: set distill.targets")
    if cfg.backbone.embedding_size != teacher.size:
        raise ConfigError(
            f"distill.fit_output maps the student's output onto the teacher's: backbone.embedding_size "
            f"({cfg.backbone.embedding_size}) must be the teacher's ({teacher.size})"
        )


def fit_student_output(cfg: Config, backbone: nn.Module, train_set: TrainingImages) -> None:
    """The least-squares refit of distill.fit_output, before a run's first step."""
    # a draw of its own (train.seed + 1), apart from the held-out split's
    fit_output_layer(backbone, train_set, cfg.distill.fit_output, cfg.train.seed + 1, cfg.data.num_workers)


def build_teacher(cfg: Config, train_set: FaceDataset, device: torch.device) -> Teacher | None:
    """The teacher when distilling: precomputed embeddings of the training images, or a model
    that computes them on the fly; None without distillation."""
    k = cfg.distill
    if not k.targets and not k.teacher:
        if cfg.head.name == "none" and not cfg.aux_heads:
            raise ConfigError(
                "head 'none' trains nothing by itself: set distill.targets or distill.teacher (or aux_heads)"
            )
        return None
    if k.targets and k.teacher:
        raise ConfigError("set distill.targets (precomputed) or distill.teacher (on the fly), not both")
    if not k.terms:
        raise ConfigError("distillation is on but distill.terms is empty")
    if k.targets:
        return precomputed_teacher(k, train_set)
    if "evaluation" in k.terms and k.threshold is None:
        raise ConfigError("an on-the-fly teacher's threshold is not known beforehand: set distill.threshold")
    if k.center:
        raise ConfigError("distill.center needs precomputed targets (the mean of all teacher embeddings)")
    assert k.teacher is not None
    if cfg.backbone.template != "arcface":
        raise ConfigError(
            "an on-the-fly teacher sees the student's augmented crops, which are on the ArcFace template only "
            f"when backbone.template is 'arcface' (it is '{cfg.backbone.template}'): use precomputed distill.targets"
        )
    online = RecognitionPipeline.load(k.teacher, detector="none", device=device, flip=k.flip)
    return Teacher(online.model.card.embedding_size, k.threshold, online=online)


def precomputed_teacher(k: DistillConfig, train_set: FaceDataset) -> Teacher:
    """Each training image's teacher embedding (centered when asked) and, unless configured, the
    teacher's threshold measured on them."""
    assert k.targets is not None
    found = targets_of(train_set, load_targets(k.targets, k.flip))
    targets = torch.from_numpy((centered(found, found.mean(0)) if k.center else found).astype(np.float32))
    threshold = k.threshold
    if "evaluation" in k.terms and threshold is None:
        threshold = teacher_threshold(targets.double().numpy(), np.asarray(train_set.labels))
        log.info("the teacher's threshold on its training targets: cosine %.4f", threshold)
    return Teacher(int(targets.shape[1]), threshold, targets=targets)


def turn_faces(cfg: Config, train_set: FaceDataset, teacher: Teacher | None) -> ImageAugmenter | None:
    """The 3-D pose augmentation of the training images, or None when it is off. Distillation
    with it needs precomputed targets: they are the teacher's embedding of the image as stored
    (pose-invariant distillation), where an on-the-fly teacher would see the turned face."""
    pose3d = cfg.data.augment.pose3d
    if pose3d.probability > 0 and teacher is not None and teacher.online is not None:
        raise ConfigError(
            "data.augment.pose3d with an on-the-fly teacher (distill.teacher) would distil the teacher's view of "
            "the turned face: precompute its targets (`facerec distill-targets`, distill.targets) instead"
        )
    images = [train_set.describe(i) for i in range(len(train_set))] if pose3d.probability > 0 else []
    return pose_augmenter(pose3d, images, np.asarray(train_set.labels))


# ---- networks ---------------------------------------------------------------------------
def build_net(cfg: Config, num_classes: int, teacher: Teacher | None) -> nn.ModuleDict:
    m = cfg.backbone
    backbone = build_backbone(m.name, m.embedding_size, m.input_size, m.options)
    head = build_head(cfg.head.name, m.embedding_size, num_classes, cfg.head.options)
    aux = nn.ModuleList(build_head(a.name, m.embedding_size, num_classes, a.options) for a in cfg.aux_heads)
    parts = {"backbone": backbone, "head": head, "aux": aux}
    if teacher is not None:
        k = cfg.distill
        parts["distill"] = DistillationLoss(m.embedding_size, teacher.size, k.terms, teacher.threshold, k.width)
    return nn.ModuleDict(parts)


def init_from(net: nn.ModuleDict, spec: str, cfg: Config) -> None:
    """Start from another run's weights (fine-tuning): a training checkpoint (backbone, and the
    head if its shape fits), or an exported model file / 'default' (backbone only)."""
    state = ckpt.initial_weights(spec)
    own = net.state_dict()
    wanted = {k: v for k, v in state.items() if k.startswith("backbone.") or cfg.train.init_head}
    usable = {k: v for k, v in wanted.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(wanted) - set(usable))
    if not any(k.startswith("backbone.") for k in usable):
        raise TrainingError(f"{spec}: no backbone weight fits model '{cfg.backbone.name}'")
    net.load_state_dict(usable, strict=False)
    if skipped:
        what = "tensors not loaded (shape or name differ)"
        log.warning("init_from %s: %d %s, e.g. %s", spec, len(skipped), what, skipped[0])


def matches(name: str, pattern: str) -> bool:
    """fnmatch, where a plain name also matches everything below it ('backbone' -> 'backbone.x')."""
    return fnmatch.fnmatchcase(name, pattern) or name.startswith(pattern.rstrip(".") + ".")


def freeze(net: nn.ModuleDict, t: TrainConfig) -> list[str]:
    """Stop the gradients of the parameters train.freeze names (less train.unfreeze); their names."""
    frozen = []
    for name, p in net.named_parameters():
        if any(matches(name, pat) for pat in t.freeze) and not any(matches(name, pat) for pat in t.unfreeze):
            p.requires_grad_(False)
            frozen.append(name)
    if t.freeze and not frozen:
        raise ConfigError(
            f"train.freeze patterns {t.freeze} match no parameter (names look like "
            f"'{next(iter(dict(net.named_parameters())))}')"
        )
    if frozen and len(frozen) == len(list(net.parameters())):
        raise ConfigError("train.freeze freezes every parameter: nothing left to train")
    return frozen


class LossTerms(nn.Module):
    """The head plus the weighted auxiliary losses: (total, detached parts by name)."""

    def __init__(self, cfg: Config, head: Head, aux: nn.ModuleList, distill: nn.Module | None = None) -> None:
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


def parallel_wrappers(
    backbone: nn.Module, losses: LossTerms, device: torch.device, dist: DistContext
) -> tuple[nn.Module, nn.Module]:
    """Modules the step calls: the plain ones, or DDP wrappers when several processes train.

    A sharded head returns the mean loss over the global batch on every rank, so the backbone's
    gradients are summed across ranks (not averaged). A replicated head returns a local mean:
    backbone and head gradients are averaged, DDP's default.
    """
    if not dist.distributed:
        return backbone, losses
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    wrapped = DDP(backbone, device_ids=ids)
    head, aux = losses.terms[0], losses.terms[1:]
    if head.sharded:
        if any(p.requires_grad for p in aux.parameters()):
            raise ConfigError(f"auxiliary losses with parameters (center loss) cannot train beside {losses.names[0]}")
        wrapped.register_comm_hook(None, all_reduce_sum_hook)
        return wrapped, losses
    if any(p.requires_grad for p in losses.parameters()):
        return wrapped, DDP(losses, device_ids=ids)
    return wrapped, losses


def param_groups(net: nn.ModuleDict, cfg: Config) -> list[dict[str, Any]]:
    """One optimizer group per trainable part; heads and losses at optim.head_lr_scale."""
    o = cfg.optim
    groups = []
    for part in ("backbone", "head", "aux", "distill"):
        if part not in net:
            continue
        scale = 1.0 if part == "backbone" else o.head_lr_scale
        params = [p for p in net[part].parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": o.lr * scale})
    return groups


# ---- batches ----------------------------------------------------------------------------
def build_sampler(cfg: Config, labels: np.ndarray, dist: DistContext) -> ResumableBatchSampler | RankSlice:
    """The global batches of every epoch (data.batch_size per process), and this rank's share."""
    d, seed = cfg.data, cfg.train.seed
    names = [cfg.head.name] + [a.name for a in cfg.aux_heads]
    pairwise = [n for n in names if head_type(n).needs_identity_batches]
    if pairwise and d.sampler != "pk":
        raise ConfigError(f"loss '{pairwise[0]}' compares images of one identity inside a batch: set data.sampler: pk")
    world = dist.world_size
    sampler: ResumableBatchSampler
    if d.sampler == "pk":
        k = d.images_per_identity_in_batch
        sampler = PKBatchSampler(labels, d.batch_size * world, k, seed, require_pairs=bool(pairwise))
    elif d.sampler == "random":
        sampler = ShuffleBatchSampler(len(labels), d.batch_size * world, seed)
    else:
        raise ConfigError(f"data.sampler must be 'random' or 'pk', got '{d.sampler}'")
    return RankSlice(sampler, dist.rank, world) if world > 1 else sampler


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
