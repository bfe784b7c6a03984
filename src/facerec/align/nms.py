"""Greedy non-maximum suppression in plain PyTorch (no torchvision)."""

from __future__ import annotations

import torch


def pairwise_overlap(box: torch.Tensor, boxes: torch.Tensor, mode: str) -> torch.Tensor:
    """Overlap of one box with many, as intersection over union ('union') or over the
    smaller area ('min'); areas use the +1 pixel convention of MTCNN."""
    x1 = torch.maximum(box[0], boxes[:, 0])
    y1 = torch.maximum(box[1], boxes[:, 1])
    x2 = torch.minimum(box[2], boxes[:, 2])
    y2 = torch.minimum(box[3], boxes[:, 3])
    inter = (x2 - x1 + 1).clamp_min(0) * (y2 - y1 + 1).clamp_min(0)
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    if mode == "min":
        return inter / torch.minimum(area, areas)
    return inter / (area + areas - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, mode: str = "union") -> torch.Tensor:
    """Indices of the boxes kept, highest score first."""
    order = torch.argsort(scores, descending=True)
    keep = []
    while len(order):
        best = order[0]
        keep.append(int(best))
        if len(order) == 1:
            break
        rest = order[1:]
        order = rest[pairwise_overlap(boxes[best], boxes[rest], mode) <= threshold]
    return torch.tensor(keep, dtype=torch.long)
