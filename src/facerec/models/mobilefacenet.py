"""MobileFaceNet (Chen et al. 2018): depthwise bottlenecks and a global depthwise conv."""

from __future__ import annotations

import torch
from torch import nn

from facerec.models.layers import downsampled
from facerec.models.registry import BACKBONES


def conv_bn(in_ch: int, out_ch: int, k: int, s: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, k, s, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.PReLU(out_ch))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand - 3x3 depthwise (stride) - 1x1 linear project."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.body = nn.Sequential(
            conv_bn(in_ch, hidden, 1, 1),
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, out_ch, 1, 1, act=False),
        )
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


# (expansion, out channels, repeats, first stride) from the paper's Table 1
SETTING = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


@BACKBONES.register("mobilefacenet")
class MobileFaceNet(nn.Module):
    def __init__(self, embedding_size: int = 128, input_size: int = 112, width_mult: float = 1.0) -> None:
        super().__init__()
        c = max(8, round(64 * width_mult))
        self.stem = nn.Sequential(conv_bn(3, c, 3, 2), conv_bn(c, c, 3, 1, groups=c))
        blocks, in_ch = [], c
        for t, out, n, s in SETTING:
            out = max(8, round(out * width_mult))
            for i in range(n):
                blocks.append(Bottleneck(in_ch, out, s if i == 0 else 1, t))
                in_ch = out
        self.blocks = nn.Sequential(*blocks)
        spatial = downsampled(input_size, 4)
        self.output = nn.Sequential(
            conv_bn(in_ch, 512, 1, 1),
            nn.Conv2d(512, 512, spatial, 1, 0, groups=512, bias=False),  # global depthwise
            nn.BatchNorm2d(512),
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.blocks(self.stem(x)))
