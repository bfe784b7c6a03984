"""The loader's augmentation applied to a whole batch on the training device.

On a GPU the per-image augmentation in the loader workers sets the pace (about half a
millisecond per 64 px face on one core, so a few thousand faces a second from a machine's
cores, where a small student trains at tens of thousands). With `data.augment_on: device` the
workers only decode (or index preloaded images) and draw each image's choices from its own seed
(`facerec.data.transforms.draw_augment`, the same draws as the loader path); this module applies
them to the uint8 batch in a few tensor operations: flip and geometric jitter as one bilinear
resampling, then resolution loss, then colour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facerec.config import AugmentConfig
from facerec.data.transforms import AugmentDraw, has_geometry

FLIP, MATRIX, LOWRES, COLOR = 0, slice(1, 7), 7, slice(8, 11)


def augment_batch(images: torch.Tensor, rows: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """uint8 (B, 3, H, W) images and their (B, 11) draw rows (AugmentDraw.row) -> the augmented
    float images in [-1, 1], on the images' device."""
    if rows.shape != (images.shape[0], AugmentDraw.ROW):
        raise ValueError(f"expected ({images.shape[0]}, {AugmentDraw.ROW}) augmentation rows, got {tuple(rows.shape)}")
    rows = rows.to(images.device, torch.float32)
    x = images.float().div_(255)
    if has_geometry(cfg):
        x = warp(x, rows[:, FLIP] > 0.5, rows[:, MATRIX].reshape(-1, 2, 3))
    elif cfg.flip:
        flipped = rows[:, FLIP] > 0.5
        x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
    if cfg.lowres_prob > 0:
        x = degrade(x, rows[:, LOWRES].round().long())
    if cfg.color_jitter > 0:
        x = color(x, rows[:, COLOR])
    return x.mul_(2).sub_(1)


def warp(x: torch.Tensor, flip: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Each image mirrored where `flip` says, then moved by its 2x3 similarity (source -> output
    pixels, pixel centers at integers), black outside: one bilinear resampling."""
    b, _, h, w = x.shape
    full = torch.cat([matrix, matrix.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], 1)
    source = torch.linalg.inv(full.double()).float()  # output -> source pixels
    flipped = flip.float()  # x -> (w - 1) - x where flipped; no boolean indexing: it would wait for the GPU
    mirror = torch.eye(3, device=x.device).repeat(b, 1, 1)
    mirror[:, 0, 0], mirror[:, 0, 2] = 1 - 2 * flipped, (w - 1) * flipped
    source = mirror @ source
    # pixel coordinates -> grid_sample's [-1, 1] (align_corners: -1 and 1 are the outer pixel centers)
    to_unit = x.new_tensor([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]])
    from_unit = torch.linalg.inv(to_unit)
    theta = (to_unit @ source @ from_unit)[:, :2]
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def degrade(x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Images with a size > 0 area-averaged down to that many pixels across (the height scaled
    alike), then bicubically back up: `transforms.degrade_resolution` on a batch."""
    h, w = x.shape[-2:]
    out = x.clone()
    for size in sizes[sizes > 0].unique().tolist():
        picked = sizes == size
        small = F.interpolate(x[picked], size=(max(1, round(h * size / w)), size), mode="area")
        out[picked] = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp_(0, 1)
    return out


def color(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Saturation about each pixel's grey, contrast about the image mean, then brightness:
    `transforms.apply_color` on a batch (without its rounding to whole grey levels)."""
    brightness, contrast, saturation = (factors[:, i, None, None, None] for i in range(3))
    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * saturation
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    return (x * brightness).clamp_(0, 1)
