"""Single-process class layers: a class-center matrix and a softmax cross-entropy, either plain
(softmax) or on scaled cosines with a margin on the target (`facerec.heads.margins`).

The margin is part of the autograd graph, so the gradient is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facerec.heads.base import Head
from facerec.heads.margins import (
    AdaFaceMargin,
    ArcFaceMargin,
    CombinedMargin,
    CosFaceMargin,
    CurricularFaceMargin,
    MagFaceMargin,
    Margin,
    NoMargin,
    SphereFaceMargin,
    build_margin,
)
from facerec.heads.registry import HEADS


def cosine_logits(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1))


class ClassCenters(Head):
    """A (num_classes x embedding_size) matrix of class centers."""

    def __init__(self, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classification head needs at least 2 classes, got {num_classes}")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self.num_classes = num_classes


class MarginHead(ClassCenters):
    """Normalized features and centers, a margin on the target cosine, scale s, cross-entropy
    (plus the margin's regularizer on the feature norms, if it has one)."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: Margin | str | Mapping[str, Any] = "none",
        scale: float = 64.0,
    ) -> None:
        super().__init__(embedding_size, num_classes)
        self.margin = build_margin(margin)
        self.scale = scale

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled logits with the margined target; in training mode the margin observes the batch."""
        if norms is None:
            norms = torch.linalg.vector_norm(embeddings, dim=1)
        cos = cosine_logits(embeddings, self.weight)
        cos_target = cos.gather(1, labels[:, None]).squeeze(1)
        if self.training:
            self.margin.observe(norms.detach(), cos_target.detach())
        target = self.margin.target(cos_target, norms)
        if self.margin.adjusts_negatives:
            cos = self.margin.negatives(cos, target.detach())
        return self.scale * cos.scatter(1, labels[:, None], target[:, None])

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        norms = torch.linalg.vector_norm(embeddings, dim=1)
        loss = F.cross_entropy(self.logits(embeddings, labels, norms), labels)
        regularizer = self.margin.regularizer(norms)
        return loss if regularizer is None else loss + regularizer.mean()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints from before margins were modules kept their buffers on the head itself
        for name, _ in self.margin.named_buffers():
            old, new = prefix + name, f"{prefix}margin.{name}"
            if old in state_dict and new not in state_dict:
                state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args)


@HEADS.register("none")
class NoHead(Head):
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

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0) -> None:
        super().__init__(embedding_size, num_classes, NoMargin(), scale)


@HEADS.register("combined")
class CombinedMarginHead(MarginHead):
    """s * psi(theta; m1, m2, m3), optionally with SphereFace's lambda annealing
    (`margins.CombinedMargin`)."""

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
        margin = CombinedMargin(m1, m2, m3, lambda_base, lambda_min, gamma, power)
        super().__init__(embedding_size, num_classes, margin, scale)


@HEADS.register("sphereface")
class SphereFaceHead(MarginHead):
    """SphereFace (A-Softmax): multiplicative angular margin m1 with lambda annealing."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: float = 4.0,
        scale: float = 32.0,
        lambda_base: float = 1000.0,
        lambda_min: float = 5.0,
        gamma: float = 0.12,
        power: float = 1.0,
    ) -> None:
        margin_fn = SphereFaceMargin(margin, lambda_base, lambda_min, gamma, power)
        super().__init__(embedding_size, num_classes, margin_fn, scale)


@HEADS.register("cosface")
class CosFaceHead(MarginHead):
    """CosFace / AM-Softmax: additive cosine margin m3."""

    def __init__(self, embedding_size: int, num_classes: int, margin: float = 0.35, scale: float = 64.0) -> None:
        super().__init__(embedding_size, num_classes, CosFaceMargin(margin), scale)


@HEADS.register("arcface")
class ArcFaceHead(MarginHead):
    """ArcFace: additive angular margin m2."""

    def __init__(self, embedding_size: int, num_classes: int, margin: float = 0.5, scale: float = 64.0) -> None:
        super().__init__(embedding_size, num_classes, ArcFaceMargin(margin), scale)


@HEADS.register("adaface")
class AdaFaceHead(MarginHead):
    """AdaFace: margin adapted to image quality via the feature norm (`margins.AdaFaceMargin`)."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: float = 0.4,
        h: float = 0.333,
        scale: float = 64.0,
        t_alpha: float = 0.01,
    ) -> None:
        super().__init__(embedding_size, num_classes, AdaFaceMargin(margin, h, t_alpha), scale)


@HEADS.register("magface")
class MagFaceHead(MarginHead):
    """MagFace: margin growing with the feature norm, plus its norm regularizer
    (`margins.MagFaceMargin`)."""

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
        super().__init__(embedding_size, num_classes, MagFaceMargin(l_a, u_a, l_m, u_m, lambda_g), scale)


@HEADS.register("curricularface")
class CurricularFaceHead(MarginHead):
    """CurricularFace: ArcFace target, hard negatives re-weighted by an EMA of the mean target
    cosine (`margins.CurricularFaceMargin`)."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        margin: float = 0.5,
        scale: float = 64.0,
        t_alpha: float = 0.01,
    ) -> None:
        super().__init__(embedding_size, num_classes, CurricularFaceMargin(margin, t_alpha), scale)
