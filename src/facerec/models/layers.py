"""Building blocks shared by the backbones."""

from __future__ import annotations

import math

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> bottleneck -> sigmoid gate (Hu et al.)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.PReLU(hidden)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * gate


class IRBlock(nn.Module):
    """ArcFace's improved residual unit: BN-conv-BN-PReLU-conv(stride)-BN [+SE] + shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, se: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.se = SqueezeExcite(out_ch) if se else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.body(x)) + self.shortcut(x)


def make_stage(in_ch: int, out_ch: int, blocks: int, stride: int, se: bool) -> nn.Sequential:
    layers = [IRBlock(in_ch, out_ch, stride, se)]
    layers += [IRBlock(out_ch, out_ch, 1, se) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class EmbeddingOutput(nn.Module):
    """BN - dropout - flatten - FC - BN: feature map to embedding (the 'output layer')."""

    def __init__(self, channels: int, spatial: int, embedding_size: int, dropout: float) -> None:
        super().__init__()
        self.bn_map = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * spatial * spatial, embedding_size)
        self.bn_emb = nn.BatchNorm1d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.bn_map(x)).flatten(1)
        return self.bn_emb(self.fc(x))


def downsampled(size: int, strides: int) -> int:
    """Spatial size after `strides` stride-2 convolutions with padding 1 and kernel 3."""
    for _ in range(strides):
        size = math.floor((size - 1) / 2) + 1
    return size
