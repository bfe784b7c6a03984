"""Metric-learning losses on a batch of embeddings and identity labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facerec.heads.base import Head
from facerec.heads.registry import HEADS


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix with a gradient that stays finite at zero distance."""
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    return torch.where(eye, torch.zeros_like(d2), d2.clamp_min(1e-12).sqrt())


def same_identity(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of positive pairs (same label, i != j) and negative pairs."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def require_pairs(positive: torch.Tensor, negative: torch.Tensor, what: str) -> None:
    if not positive.any():
        raise ValueError(
            f"{what}: the batch has no two images of the same identity; use the 'pk' sampler "
            "(data.sampler: pk) so every identity in a batch has several images"
        )
    if not negative.any():
        raise ValueError(f"{what}: the batch holds a single identity; no negative pairs")


class MetricLoss(Head):
    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def distances(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = F.normalize(embeddings, dim=1) if self.normalize else embeddings
        return pairwise_distances(x)


@HEADS.register("contrastive")
class ContrastiveLoss(MetricLoss):
    """Hadsell et al.: d^2 for same-identity pairs, max(0, margin - d)^2 for others,
    averaged over all unordered pairs of the batch."""

    needs_identity_batches = True

    def __init__(self, margin: float = 1.0, normalize: bool = True) -> None:
        super().__init__(normalize)
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d = self.distances(embeddings)
        positive, negative = same_identity(labels)
        require_pairs(positive, negative, "contrastive loss")
        upper = torch.ones_like(positive).triu(1)
        per_pair = torch.where(positive, d**2, F.relu(self.margin - d) ** 2)
        return per_pair[upper].mean()


@HEADS.register("triplet")
class TripletLoss(MetricLoss):
    """FaceNet triplet loss max(0, d(a,p) - d(a,n) + margin) with online mining in the batch.

    mining='batch_hard' (Hermans et al.): per anchor, the farthest positive and nearest negative.
    mining='semi_hard' (FaceNet): every (anchor, positive) pair with the nearest negative that is
    farther than the positive; if there is none, the farthest negative.
    mining='all': every valid triplet, averaged over those with a positive loss.
    """

    needs_identity_batches = True

    def __init__(self, margin: float = 0.2, mining: str = "semi_hard", normalize: bool = True) -> None:
        super().__init__(normalize)
        if mining not in ("batch_hard", "semi_hard", "all"):
            raise ValueError(f"unknown triplet mining '{mining}' (batch_hard, semi_hard, all)")
        self.margin, self.mining = margin, mining

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d = self.distances(embeddings)
        positive, negative = same_identity(labels)
        require_pairs(positive, negative, "triplet loss")
        if self.mining == "batch_hard":
            return self._batch_hard(d, positive, negative)
        if self.mining == "semi_hard":
            return self._semi_hard(d, positive, negative)
        return self._all(d, positive, negative)

    def _batch_hard(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        anchors = pos.any(1) & neg.any(1)
        hardest_pos = torch.where(pos, d, torch.full_like(d, -torch.inf)).amax(1)
        hardest_neg = torch.where(neg, d, torch.full_like(d, torch.inf)).amin(1)
        return F.relu(hardest_pos - hardest_neg + self.margin)[anchors].mean()

    def _semi_hard(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        a, p = pos.nonzero(as_tuple=True)
        d_ap = d[a, p]
        d_an = d[a]  # (pairs, batch)
        neg_a = neg[a]
        farther = neg_a & (d_an > d_ap[:, None])
        nearest_farther = torch.where(farther, d_an, torch.full_like(d_an, torch.inf)).amin(1)
        farthest = torch.where(neg_a, d_an, torch.full_like(d_an, -torch.inf)).amax(1)
        chosen = torch.where(farther.any(1), nearest_farther, farthest)
        return F.relu(d_ap - chosen + self.margin).mean()

    def _all(self, d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        loss = F.relu(d[:, :, None] - d[:, None, :] + self.margin)
        valid = pos[:, :, None] & neg[:, None, :]
        active = valid & (loss > 0)
        if not active.any():
            return (loss * valid).sum()  # zero, keeps the graph
        return loss[active].mean()


@HEADS.register("center")
class CenterLoss(Head):
    """Wen et al.: mean of 0.5 * ||x_i - c_{y_i}||^2. The centers are parameters learned by
    the run's optimizer; use it as an auxiliary loss beside a softmax head (aux_heads)."""

    def __init__(self, embedding_size: int, num_classes: int, normalize: bool = False) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, embedding_size) * 0.01)
        self.normalize = normalize

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = F.normalize(embeddings, dim=1) if self.normalize else embeddings
        return 0.5 * ((x - self.centers[labels]) ** 2).sum(1).mean()
