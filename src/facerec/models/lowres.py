"""A small IR-SE network for low-resolution faces (32x32 to 36x36).

Input conv-BN-PReLU at full resolution, then 8 IR-SE blocks in 4 stages of 2 (the first
block of stages 2-4 halves the resolution), then BN + linear to the embedding, as in the
high/low-resolution study: 36 -> 36 -> 18 -> 9 -> 5. With `stem_stride=2` the same network takes
up-scaled or high-resolution faces at their larger size (112 -> 56 -> 56 -> 28 -> 14 -> 7): the blocks
see maps of about the low-resolution network's size, so runs at 36 and 112 px stay comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from facerec.models.layers import EmbeddingOutput, downsampled, make_stage
from facerec.models.registry import BACKBONES


@BACKBONES.register("lowres_irse8")
class LowResIRSE(nn.Module):
    def __init__(
        self,
        embedding_size: int = 512,
        input_size: int = 36,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks_per_stage: int = 2,
        se: bool = True,
        dropout: float = 0.0,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0])
        )
        stages, in_ch = [], widths[0]
        for i, width in enumerate(widths):
            stages.append(make_stage(in_ch, width, blocks_per_stage, 1 if i == 0 else 2, se))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        spatial = downsampled(input_size, len(widths) - 1 + (stem_stride == 2))
        self.output = EmbeddingOutput(in_ch, spatial, embedding_size, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.stages(self.stem(x)))
