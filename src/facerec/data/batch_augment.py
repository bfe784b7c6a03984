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

FLIP, MATRIX, LOWRES, COLOR = AugmentDraw.FLIP, AugmentDraw.MATRIX, AugmentDraw.LOWRES, AugmentDraw.COLOR


def augment_batch(images: torch.Tensor, rows: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """uint8 (B, 3, H, W) images and their (B, 11) draw rows (AugmentDraw.row) -> the augmented
    float images in [-1, 1], on the images' device. The rows are read on the CPU (where the loader
    leaves them): what the device needs from them is computed there and sent without waiting, so
    the augmentation queues behind the previous step instead of stopping the GPU."""
    if rows.shape != (images.shape[0], AugmentDraw.ROW):
        raise ValueError(f"expected ({images.shape[0]}, {AugmentDraw.ROW}) augmentation rows, got {tuple(rows.shape)}")
    rows = rows.detach().to("cpu", torch.float64)
    device = images.device
    x = images.float().div_(255)
    if has_geometry(cfg):
        theta = sampling_grid_matrices(rows[:, FLIP] > 0.5, rows[:, MATRIX].reshape(-1, 2, 3), *x.shape[-2:])
        grid = F.affine_grid(to_device(theta.float(), device), list(x.shape), align_corners=True)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    elif cfg.flip:
        flipped = to_device(rows[:, FLIP] > 0.5, device)
        x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
    if cfg.lowres_prob > 0:
        x = degrade(x, rows[:, LOWRES].round().long())
    if cfg.color_jitter > 0:
        x = color(x, to_device(rows[:, COLOR].float(), device))
    return x.mul_(2).sub_(1)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on the device, copied from pinned memory without waiting for the GPU."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def sampling_grid_matrices(flip: torch.Tensor, matrix: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """affine_grid's (B, 2, 3) matrices (output -> source, in [-1, 1] with align_corners) of each
    image mirrored where `flip` says, then moved by its 2x3 similarity (source -> output pixels,
    pixel centers at integers), in float64 on the CPU."""
    b = len(matrix)
    full = torch.cat([matrix, matrix.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], 1)
    source = torch.linalg.inv(full)  # output -> source pixels
    flipped = flip.to(matrix.dtype)
    mirror = torch.eye(3, dtype=matrix.dtype).repeat(b, 1, 1)
    mirror[:, 0, 0], mirror[:, 0, 2] = 1 - 2 * flipped, (w - 1) * flipped  # x -> (w - 1) - x where flipped
    source = mirror @ source
    # pixel coordinates -> grid_sample's [-1, 1] (align_corners: -1 and 1 are the outer pixel centers)
    to_unit = matrix.new_tensor([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]])
    return (to_unit @ source @ torch.linalg.inv(to_unit))[:, :2]


def degrade(x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Images with a size > 0 (sizes: on the CPU) area-averaged down to that many pixels across
    (the height scaled alike), then bicubically back up: `transforms.degrade_resolution` on a batch."""
    h, w = x.shape[-2:]
    out = x.clone()
    for size in sizes[sizes > 0].unique().tolist():
        picked = to_device(torch.nonzero(sizes == size).flatten(), x.device)
        small = F.interpolate(x.index_select(0, picked), size=(max(1, round(h * size / w)), size), mode="area")
        out.index_copy_(0, picked, F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp_(0, 1))
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
