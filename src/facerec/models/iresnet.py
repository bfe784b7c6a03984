"""iResNet (ArcFace 'IR' ResNets) and IR-SE, for 112x112 (or any) aligned faces."""

from __future__ import annotations

import torch
from torch import nn

from facerec.models.layers import EmbeddingOutput, downsampled, make_stage
from facerec.models.registry import BACKBONES

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}


class IResNet(nn.Module):
    def __init__(
        self,
        blocks: tuple[int, ...],
        embedding_size: int = 512,
        input_size: int = 112,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        se: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError("blocks and widths must have the same length")
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.PReLU(widths[0]),
        )
        stages, in_ch = [], widths[0]
        for n, width in zip(blocks, widths, strict=True):
            stages.append(make_stage(in_ch, width, n, 2, se))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        spatial = downsampled(input_size, len(blocks))
        self.output = EmbeddingOutput(in_ch, spatial, embedding_size, dropout)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.stages(self.stem(x)))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _register(depth: int, se: bool) -> None:
    name = f"{'ir_se' if se else 'iresnet'}{depth}"

    @BACKBONES.register(name)
    def build(
        embedding_size: int = 512,
        input_size: int = 112,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        dropout: float = 0.0,
    ) -> IResNet:
        return IResNet(DEPTHS[depth], embedding_size, input_size, tuple(widths), se, dropout)

    build.__name__ = name


for _depth in DEPTHS:
    _register(_depth, se=False)
    _register(_depth, se=True)
