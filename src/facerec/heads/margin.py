"""Softmax-family classification heads: a class-center matrix, a margin on the target logit,
scaled cross-entropy.

All angular margins are special cases of the combined target function

    psi(theta) = (-1)^k cos(m1*theta + m2) - 2k - m3,   k = floor((m1*theta + m2) / pi)

which equals cos(m1*theta + m2) - m3 while m1*theta + m2 <= pi and continues it
monotonically (and continuously) beyond, so that theta + m > pi never makes the target
logit *increase* with theta (SphereFace's A-Softmax extension, generalised to m2, m3).
SphereFace is (m1, 0, 0), ArcFace (1, m2, 0), CosFace (1, 0, m3). The margin is part of the
autograd graph, so the gradient is exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facerec.heads.registry import HEADS

EPS = 1e-7


def angle(cos: torch.Tensor) -> torch.Tensor:
    """theta = arccos(cos), clamped away from +-1 where the derivative is infinite."""
    return torch.acos(cos.clamp(-1 + EPS, 1 - EPS))


def combined_margin(cos: torch.Tensor, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0) -> torch.Tensor:
    """psi(theta) of the module docstring, applied elementwise to cosines."""
    if m1 == 1.0 and m2 == 0.0:
        return cos - m3  # no angular part: skip arccos (exact and better conditioned)
    u = m1 * angle(cos) + m2
    k = torch.floor(u / math.pi).detach()
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(u) - 2.0 * k - m3


def cosine_logits(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1))


class ClassCenters(nn.Module):
    """A (num_classes x embedding_size) matrix of class centers."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classification head needs at least 2 classes, got {num_classes}")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self.num_classes = num_classes


class MarginHead(ClassCenters):
    """Normalized features and centers, margin on the target cosine, scale s, cross-entropy."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0) -> None:
        super().__init__(embedding_size, num_classes)
        self.scale = scale

    def target_logit(self, cos_target: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        return cos_target

    def adjust_logits(self, cos: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Put the margined target back into the cosine matrix (hook for curricular heads)."""
        return cos.scatter(1, labels[:, None], target[:, None])

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = cosine_logits(embeddings, self.weight)
        target = self.target_logit(cos.gather(1, labels[:, None]).squeeze(1), embeddings)
        return self.scale * self.adjust_logits(cos, target, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)


@HEADS.register("none")
class NoHead(nn.Module):
    """No identity loss (unlabelled data): the run learns from its other terms, e.g. distillation."""

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return embeddings.sum() * 0.0  # zero, but part of the graph


@HEADS.register("softmax")
class SoftmaxHead(ClassCenters):
    """Plain linear classifier (with bias) and cross-entropy: the DeepFace/DeepID baseline."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__(embedding_size, num_classes)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(embeddings, self.weight, self.bias)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings), labels)


@HEADS.register("normface")
class NormFaceHead(MarginHead):
    """NormFace: cosine logits with a fixed scale, no margin."""


@HEADS.register("combined")
class CombinedMarginHead(MarginHead):
    """s * psi(theta; m1, m2, m3), optionally blended with cos(theta) as SphereFace anneals.

    With annealing, the target is (lambda*cos + psi) / (1 + lambda) where
    lambda = max(lambda_min, lambda_base * (1 + gamma * step) ** -power) decays with the
    training step counted by this head (saved in its state dict, so resuming is exact).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.0,
        m3: float = 0.0,
        lambda_base: float = 0.0,
        lambda_min: float = 0.0,
        gamma: float = 0.12,
        power: float = 1.0,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        if m1 < 1 or m2 < 0 or m3 < 0:
            raise ValueError(f"margins must satisfy m1 >= 1, m2 >= 0, m3 >= 0; got {m1}, {m2}, {m3}")
        self.m1, self.m2, self.m3 = m1, m2, m3
        self.lambda_base, self.lambda_min, self.gamma, self.power = lambda_base, lambda_min, gamma, power
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_lambda(self) -> float:
        if self.lambda_base <= 0:
            return 0.0
        decayed = self.lambda_base * (1 + self.gamma * int(self.step)) ** (-self.power)
        return max(self.lambda_min, decayed)

    def target_logit(self, cos_target: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        psi = combined_margin(cos_target, self.m1, self.m2, self.m3)
        lam = self.current_lambda()
        if self.training:
            self.step += 1
        return (lam * cos_target + psi) / (1 + lam) if lam > 0 else psi


@HEADS.register("sphereface")
def sphereface(
    embedding_size: int,
    num_classes: int,
    margin: float = 4.0,
    scale: float = 32.0,
    lambda_base: float = 1000.0,
    lambda_min: float = 5.0,
    gamma: float = 0.12,
    power: float = 1.0,
) -> CombinedMarginHead:
    """SphereFace (A-Softmax): multiplicative angular margin m1 with lambda annealing."""
    return CombinedMarginHead(
        embedding_size,
        num_classes,
        scale,
        m1=margin,
        lambda_base=lambda_base,
        lambda_min=lambda_min,
        gamma=gamma,
        power=power,
    )


@HEADS.register("cosface")
def cosface(embedding_size: int, num_classes: int, margin: float = 0.35, scale: float = 64.0) -> CombinedMarginHead:
    """CosFace / AM-Softmax: additive cosine margin m3."""
    return CombinedMarginHead(embedding_size, num_classes, scale, m3=margin)


@HEADS.register("arcface")
def arcface(embedding_size: int, num_classes: int, margin: float = 0.5, scale: float = 64.0) -> CombinedMarginHead:
    """ArcFace: additive angular margin m2."""
    return CombinedMarginHead(embedding_size, num_classes, scale, m2=margin)


@HEADS.register("adaface")
class AdaFaceHead(MarginHead):
    """AdaFace (Kim et al. 2022): margin adapted to image quality via the feature norm.

    z = clip((||x|| - mu) / (sigma + eps) * h, -1, 1) with mu, sigma running (EMA, no gradient)
    statistics of the batch feature norms; target = cos(clip(theta - m*z, eps, pi-eps)) - (m + m*z).
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: float = 0.4,
        h: float = 0.333,
        scale: float = 64.0,
        t_alpha: float = 0.01,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        self.margin, self.h, self.t_alpha = margin, h, t_alpha
        self.register_buffer("norm_mean", torch.tensor(20.0))
        self.register_buffer("norm_std", torch.tensor(100.0))

    def norm_scaler(self, embeddings: torch.Tensor) -> torch.Tensor:
        norms = embeddings.detach().norm(dim=1).clamp(0.001, 100)
        if self.training:
            with torch.no_grad():
                std = norms.std() if norms.numel() > 1 else norms.new_zeros(())
                self.norm_mean.mul_(1 - self.t_alpha).add_(self.t_alpha * norms.mean())
                self.norm_std.mul_(1 - self.t_alpha).add_(self.t_alpha * std)
        z = (norms - self.norm_mean) / (self.norm_std + 1e-3) * self.h
        return z.clamp(-1, 1)

    def target_logit(self, cos_target: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        z = self.norm_scaler(embeddings).to(cos_target.dtype)
        theta = (angle(cos_target) - self.margin * z).clamp(EPS, math.pi - EPS)
        return torch.cos(theta) - (self.margin + self.margin * z)


@HEADS.register("magface")
class MagFaceHead(MarginHead):
    """MagFace (Meng et al. 2021): margin m(a) grows with the feature norm a, plus the
    regularizer lambda_g * g(a), g(a) = a / u_a^2 + 1 / a, that rewards large norms for easy
    samples. a is clamped to [l_a, u_a]."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        self.l_a, self.u_a, self.l_m, self.u_m, self.lambda_g = l_a, u_a, l_m, u_m, lambda_g

    def feature_norm(self, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings.norm(dim=1).clamp(self.l_a, self.u_a)

    def target_logit(self, cos_target: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        a = self.feature_norm(embeddings)
        m = (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m
        u = angle(cos_target) + m
        k = torch.floor(u / math.pi).detach()
        return (1.0 - 2.0 * torch.remainder(k, 2.0)) * torch.cos(u) - 2.0 * k

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        a = self.feature_norm(embeddings)
        regularizer = (a / self.u_a**2 + 1.0 / a).mean()
        return super().forward(embeddings, labels) + self.lambda_g * regularizer


@HEADS.register("curricularface")
class CurricularFaceHead(MarginHead):
    """CurricularFace (Huang et al. 2020): ArcFace target; hard negatives (cos_j above the
    margined target) are re-weighted to cos_j * (t + cos_j), where t is an EMA (no gradient)
    of the mean target cosine, so hard samples matter more as training progresses."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: float = 0.5,
        scale: float = 64.0,
        t_alpha: float = 0.01,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale)
        self.margin, self.t_alpha = margin, t_alpha
        self.register_buffer("t", torch.zeros(()))

    def target_logit(self, cos_target: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.t.mul_(1 - self.t_alpha).add_(self.t_alpha * cos_target.detach().mean())
        return combined_margin(cos_target, m2=self.margin)

    def adjust_logits(self, cos: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        t = self.t.to(cos.dtype)
        hard = cos > target[:, None].detach()
        cos = torch.where(hard, cos * (t + cos), cos)
        return cos.scatter(1, labels[:, None], target[:, None])
