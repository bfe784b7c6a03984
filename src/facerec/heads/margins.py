"""Margins: how a cosine classifier turns the target cosine into the target logit.

A margin is an `nn.Module` (so running statistics live in its buffers and in the state dict)
that every cosine class layer takes, the single-process `MarginHead` and the sharded Partial FC
alike. Per training forward the class layer calls, in this order:

1. `observe(norms, cos_target)` (training only) with the whole batch, detached: update running
   statistics and counters. A sharded layer passes the GLOBAL batch (identical on every rank),
   so its statistics equal the single-process ones; it passes `cos_target=None` unless the
   margin sets `uses_batch_targets` or `adjusts_negatives` (each row's target cosine lives on
   one rank and must be all-reduced first, a batch-sized vector).
2. `target(cos_target, norms)`: the target logit (before the scale) of each row, inside autograd
   so the gradient is exact; `norms` are the feature norms with gradient.
3. `negatives(cos, target)` only when `adjusts_negatives`: the non-target cosines given each
   row's (detached) target. It must be elementwise given the row's target, so a rank can apply
   it to its own columns (the target column is overwritten afterwards).
4. `regularizer(norms)`: an extra per-sample loss term on the norms (None: no term); the class
   layer averages it over the batch.

The angular margins are special cases of the combined target function

    psi(theta) = (-1)^k cos(m1*theta + m2) - 2k - m3,   k = floor((m1*theta + m2) / pi)

which equals cos(m1*theta + m2) - m3 while m1*theta + m2 <= pi and continues it monotonically
(and continuously) beyond, so that theta + m > pi never makes the target logit *increase* with
theta (SphereFace's A-Softmax extension, generalized to m2, m3). SphereFace is (m1, 0, 0),
ArcFace (1, m2, 0), CosFace (1, 0, m3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from facerec.errors import ConfigError
from facerec.registry import Registry

EPS = 1e-7


def angle(cos: torch.Tensor) -> torch.Tensor:
    """theta = arccos(cos), clamped away from +-1 where the derivative is infinite."""
    return torch.acos(cos.clamp(-1 + EPS, 1 - EPS))


def combined_margin(
    cos: torch.Tensor, m1: float = 1.0, m2: float | torch.Tensor = 0.0, m3: float = 0.0
) -> torch.Tensor:
    """psi(theta) of the module docstring, applied elementwise to cosines (m2 may be a tensor)."""
    if m1 == 1.0 and isinstance(m2, float | int) and m2 == 0.0:
        return cos - m3  # no angular part: skip arccos (exact and better conditioned)
    u = m1 * angle(cos) + m2
    k = torch.floor(u / math.pi).detach()
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(u) - 2.0 * k - m3


class Margin(nn.Module):
    """The target logit of a cosine classifier; see the module docstring for the call order."""

    adjusts_negatives: ClassVar[bool] = False
    uses_batch_targets: ClassVar[bool] = False

    def observe(self, norms: torch.Tensor, cos_target: torch.Tensor | None) -> None:
        """Update running statistics from a training batch (detached); none by default."""

    def target(self, cos_target: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def negatives(self, cos: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cosines (rows, any columns) given each row's detached target (rows,): unchanged."""
        return cos

    def regularizer(self, norms: torch.Tensor) -> torch.Tensor | None:
        """A per-sample loss term on the feature norms, or None."""
        return None


MARGINS: Registry[Margin] = Registry("margin")


def build_margin(spec: str | Mapping[str, Any] | Margin) -> Margin:
    """A margin from a name, a mapping {name: ..., **options}, or a ready module."""
    if isinstance(spec, Margin):
        return spec
    if isinstance(spec, str):
        return MARGINS.build(spec)
    options = dict(spec)
    if "name" not in options:
        raise ConfigError(f"a margin needs a 'name' ({', '.join(MARGINS.names())}); got {options}")
    return MARGINS.build(options.pop("name"), **options)


@MARGINS.register("none")
class NoMargin(Margin):
    """The cosine itself (NormFace)."""

    def target(self, cos_target: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        return cos_target


@MARGINS.register("combined")
class CombinedMargin(Margin):
    """psi(theta; m1, m2, m3), optionally blended with cos(theta) as SphereFace anneals.

    With annealing, the target is (lambda*cos + psi) / (1 + lambda) where
    lambda = max(lambda_min, lambda_base * (1 + gamma * t) ** -power) and t counts the training
    steps before the current one (`step` counts those observed, saved in the state dict, so
    resuming is exact).
    """

    def __init__(
        self,
        m1: float = 1.0,
        m2: float = 0.0,
        m3: float = 0.0,
        lambda_base: float = 0.0,
        lambda_min: float = 0.0,
        gamma: float = 0.12,
        power: float = 1.0,
    ) -> None:
        super().__init__()
        if m1 < 1 or m2 < 0 or m3 < 0:
            raise ValueError(f"margins must satisfy m1 >= 1, m2 >= 0, m3 >= 0; got {m1}, {m2}, {m3}")
        self.m1, self.m2, self.m3 = m1, m2, m3
        self.lambda_base, self.lambda_min, self.gamma, self.power = lambda_base, lambda_min, gamma, power
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_lambda(self) -> float:
        """The lambda of the latest observed step (observe() runs before target())."""
        if self.lambda_base <= 0:
            return 0.0
        decayed = self.lambda_base * (1 + self.gamma * max(int(self.step) - 1, 0)) ** (-self.power)
        return max(self.lambda_min, decayed)

    def observe(self, norms: torch.Tensor, cos_target: torch.Tensor | None) -> None:
        self.step += 1

    def target(self, cos_target: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        psi = combined_margin(cos_target, self.m1, self.m2, self.m3)
        lam = self.current_lambda()
        return (lam * cos_target + psi) / (1 + lam) if lam > 0 else psi


@MARGINS.register("sphereface")
class SphereFaceMargin(CombinedMargin):
    """SphereFace (A-Softmax): multiplicative angular margin m1 with lambda annealing."""

    def __init__(
        self,
        margin: float = 4.0,
        lambda_base: float = 1000.0,
        lambda_min: float = 5.0,
        gamma: float = 0.12,
        power: float = 1.0,
    ) -> None:
        super().__init__(m1=margin, lambda_base=lambda_base, lambda_min=lambda_min, gamma=gamma, power=power)


@MARGINS.register("cosface")
class CosFaceMargin(CombinedMargin):
    """CosFace / AM-Softmax: additive cosine margin m3."""

    def __init__(self, margin: float = 0.35) -> None:
        super().__init__(m3=margin)


@MARGINS.register("arcface")
class ArcFaceMargin(CombinedMargin):
    """ArcFace: additive angular margin m2."""

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__(m2=margin)


@MARGINS.register("adaface")
class AdaFaceMargin(Margin):
    """AdaFace (Kim et al. 2022): margin adapted to image quality via the feature norm.

    z = clip((||x|| - mu) / (sigma + eps) * h, -1, 1) with mu, sigma running (EMA, no gradient)
    statistics of the batch feature norms; target = cos(clip(theta - m*z, eps, pi-eps)) - (m + m*z).
    """

    def __init__(self, margin: float = 0.4, h: float = 0.333, t_alpha: float = 0.01) -> None:
        super().__init__()
        self.margin, self.h, self.t_alpha = margin, h, t_alpha
        self.register_buffer("norm_mean", torch.tensor(20.0))
        self.register_buffer("norm_std", torch.tensor(100.0))

    @staticmethod
    def clipped(norms: torch.Tensor) -> torch.Tensor:
        return norms.detach().clamp(0.001, 100)

    @torch.no_grad()
    def observe(self, norms: torch.Tensor, cos_target: torch.Tensor | None) -> None:
        norms = self.clipped(norms)
        std = norms.std() if norms.numel() > 1 else norms.new_zeros(())
        self.norm_mean.mul_(1 - self.t_alpha).add_(self.t_alpha * norms.mean())
        self.norm_std.mul_(1 - self.t_alpha).add_(self.t_alpha * std)

    def target(self, cos_target: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        z = (self.clipped(norms) - self.norm_mean) / (self.norm_std + 1e-3) * self.h
        z = z.clamp(-1, 1).to(cos_target.dtype)
        theta = (angle(cos_target) - self.margin * z).clamp(EPS, math.pi - EPS)
        return torch.cos(theta) - (self.margin + self.margin * z)


@MARGINS.register("magface")
class MagFaceMargin(Margin):
    """MagFace (Meng et al. 2021): an additive angular margin m(a) growing linearly from l_m to
    u_m with the feature norm a (clamped to [l_a, u_a]), plus the regularizer
    lambda_g * g(a), g(a) = a / u_a^2 + 1 / a, that rewards large norms for easy samples."""

    def __init__(
        self, l_a: float = 10.0, u_a: float = 110.0, l_m: float = 0.45, u_m: float = 0.8, lambda_g: float = 35.0
    ) -> None:
        super().__init__()
        self.l_a, self.u_a, self.l_m, self.u_m, self.lambda_g = l_a, u_a, l_m, u_m, lambda_g

    def clipped(self, norms: torch.Tensor) -> torch.Tensor:
        return norms.clamp(self.l_a, self.u_a)

    def target(self, cos_target: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        a = self.clipped(norms).to(cos_target.dtype)
        m = (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m
        return combined_margin(cos_target, m2=m)

    def regularizer(self, norms: torch.Tensor) -> torch.Tensor:
        a = self.clipped(norms)
        return self.lambda_g * (a / self.u_a**2 + 1.0 / a)


@MARGINS.register("curricularface")
class CurricularFaceMargin(Margin):
    """CurricularFace (Huang et al. 2020): ArcFace target; hard negatives (cos_j above the
    margined target) are re-weighted to cos_j * (t + cos_j), where t is an EMA (no gradient)
    of the mean target cosine, so hard samples matter more as training progresses."""

    adjusts_negatives = True
    uses_batch_targets = True

    def __init__(self, margin: float = 0.5, t_alpha: float = 0.01) -> None:
        super().__init__()
        self.margin, self.t_alpha = margin, t_alpha
        self.register_buffer("t", torch.zeros(()))

    @torch.no_grad()
    def observe(self, norms: torch.Tensor, cos_target: torch.Tensor | None) -> None:
        if cos_target is None:
            raise ValueError("curricularface observes the target cosines of the batch")
        self.t.mul_(1 - self.t_alpha).add_(self.t_alpha * cos_target.mean())

    def target(self, cos_target: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        return combined_margin(cos_target, m2=self.margin)

    def negatives(self, cos: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = self.t.to(cos.dtype)
        return torch.where(cos > target[:, None], cos * (t + cos), cos)
