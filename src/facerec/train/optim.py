"""Optimizers and learning-rate schedules, selected by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from facerec.config import OptimConfig, ScheduleConfig
from facerec.registry import Registry

OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")
SCHEDULES: Registry[Callable[[float], float]] = Registry("lr schedule")


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
    )


@OPTIMIZERS.register("adamw")
def adamw(params: Iterable, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def build_optimizer(param_groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.name)(param_groups, cfg)


# A schedule maps training progress p in [0, 1] (after warm-up) to a factor of the base lr.
@SCHEDULES.register("cosine")
def cosine(cfg: ScheduleConfig) -> Callable[[float], float]:
    return lambda p: cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))


@SCHEDULES.register("poly")
def poly(cfg: ScheduleConfig) -> Callable[[float], float]:
    return lambda p: cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * (1 - p) ** cfg.power


@SCHEDULES.register("constant")
def constant(cfg: ScheduleConfig) -> Callable[[float], float]:
    return lambda p: 1.0


@SCHEDULES.register("step")
def step(cfg: ScheduleConfig) -> Callable[[float], float]:
    return lambda p: cfg.gamma ** sum(p >= m for m in cfg.milestones)


def lr_factor(cfg: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up from 0 over warmup_steps, then the named decay over the rest."""
    decay = SCHEDULES.get(cfg.name)(cfg)
    warm = cfg.warmup_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return decay(min(1.0, (step - warm) / max(1, total_steps - warm)))

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, total_steps))
