"""Knowledge-distillation losses between a student's embeddings s (B, d_s) and a teacher's
t (B, d_t) for the same images.

- embedding regression: squared L2 between the unit embeddings, or 1 - cosine (same size, or
  through a learned linear projection of the student to the teacher's size);
- relational: the pairwise cosine-similarity matrices (any sizes), RKD distance and RKD angle
  (Park et al., "Relational Knowledge Distillation", CVPR 2019);
- logits: temperature-softened KL divergence when both have class heads (Hinton et al.);
- evaluation-oriented relation loss in the spirit of EKD (Huang et al., "Evaluation-oriented
  Knowledge Distillation for Deep Face Recognition", CVPR 2022): the pairwise similarities
  are matched with weights that concentrate on the pairs the verification decision depends
  on, those whose teacher similarity is near the operating threshold, and the pairs the
  student currently decides differently from the teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    x = F.normalize(x, dim=1)
    return x @ x.T


def _off_diagonal(n: int, device: torch.device) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def embedding_l2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||s/|s| - t/|t| ||^2 (= 2 - 2 cos)."""
    return (F.normalize(student, dim=1) - F.normalize(teacher, dim=1)).pow(2).sum(1).mean()


def embedding_cosine(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 1 - cos(s, t)."""
    return (1 - F.cosine_similarity(student, teacher, dim=1)).mean()


def similarity_matrix(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the off-diagonal pairwise cosine similarities."""
    off = _off_diagonal(len(student), student.device)
    return (cosine_matrix(student) - cosine_matrix(teacher))[off].pow(2).mean()


def _normalized_distances(x: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(x, x)
    off = _off_diagonal(len(x), x.device)
    return d / d[off].mean()


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Huber loss between the pairwise Euclidean distances, each divided by its batch mean."""
    off = _off_diagonal(len(student), student.device)
    with torch.no_grad():
        target = _normalized_distances(teacher)
    return F.smooth_l1_loss(_normalized_distances(student)[off], target[off])


def _angles(x: torch.Tensor) -> torch.Tensor:
    """cos of the angle at j between i and k for all triplets: <e_ji, e_jk>, e unit differences."""
    diff = F.normalize(x[None, :, :] - x[:, None, :], dim=2)  # [j, i] = unit vector from j to i
    return torch.bmm(diff, diff.transpose(1, 2))  # [j, i, k]


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Huber loss between the angles formed by every triplet of the batch."""
    with torch.no_grad():
        target = _angles(teacher)
    return F.smooth_l1_loss(_angles(student), target)


def logit_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """T^2 KL(softmax(t/T) || softmax(s/T)), averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2


def evaluation_relation(
    student: torch.Tensor,
    teacher: torch.Tensor,
    threshold: float,
    width: float = 0.1,
    disagreement_weight: float = 1.0,
) -> torch.Tensor:
    """Weighted squared difference of pairwise cosine similarities. A pair's weight is
    exp(-(t_ij - threshold)^2 / (2 width^2)), plus `disagreement_weight` when the student's
    similarity falls on the other side of the threshold than the teacher's; weights are
    normalized to sum to 1 and carry no gradient."""
    off = _off_diagonal(len(student), student.device)
    s, t = cosine_matrix(student)[off], cosine_matrix(teacher).detach()[off]
    with torch.no_grad():
        weight = torch.exp(-((t - threshold) ** 2) / (2 * width**2))
        weight = weight + disagreement_weight * ((s >= threshold) != (t >= threshold)).to(weight.dtype)
        weight = weight / weight.sum().clamp_min(1e-12)
    return (weight * (s - t) ** 2).sum()


EMBEDDING_LOSSES = {
    "l2": embedding_l2,
    "cosine": embedding_cosine,
    "similarity": similarity_matrix,
    "rkd_distance": rkd_distance,
    "rkd_angle": rkd_angle,
}
NEEDS_SAME_SIZE = {"l2", "cosine"}


class DistillationLoss(nn.Module):
    """A weighted sum of distillation terms on (student, teacher) embeddings. A linear
    projection of the student to the teacher's size is learned when a term needs equal sizes
    and they differ."""

    def __init__(
        self,
        student_size: int,
        teacher_size: int,
        terms: dict[str, float],
        threshold: float | None = None,
        width: float = 0.1,
    ) -> None:
        super().__init__()
        unknown = set(terms) - set(EMBEDDING_LOSSES) - {"evaluation"}
        if unknown:
            known = sorted([*EMBEDDING_LOSSES, "evaluation"])
            raise ValueError(f"unknown distillation terms {sorted(unknown)}: choose from {known}")
        if "evaluation" in terms and threshold is None:
            raise ValueError("the 'evaluation' term needs the teacher's verification threshold")
        self.terms, self.threshold, self.width = dict(terms), threshold, width
        needs = any(t in NEEDS_SAME_SIZE for t in terms) and student_size != teacher_size
        self.projection = nn.Linear(student_size, teacher_size, bias=False) if needs else None

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> dict[str, torch.Tensor]:
        teacher = teacher.detach().to(student.dtype)
        parts = {}
        for name, weight in self.terms.items():
            if name == "evaluation":
                value = evaluation_relation(student, teacher, self.threshold, self.width)
            elif name in NEEDS_SAME_SIZE and self.projection is not None:
                value = EMBEDDING_LOSSES[name](self.projection(student), teacher)
            else:
                value = EMBEDDING_LOSSES[name](student, teacher)
            parts[f"distill_{name}"] = weight * value
        return parts
