"""Face-specific augmentation on uint8 HWC arrays, driven by an explicit random generator
so that every sample's augmentation is reproducible from its seed (exact resume)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from facerec.config import AugmentConfig
from facerec.core.geometry import ARCFACE_112, umeyama, warp_affine


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HWC RGB -> float CHW in [-1, 1] (the normalization every facerec model expects)."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)
    return x.div_(127.5).sub_(1.0)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def from_arcface_crop(crop: np.ndarray, template: np.ndarray | None, size: int) -> np.ndarray:
    """A square crop on the ArcFace template as the crop of a model whose landmarks sit at
    `template` in `size` pixels: resized when that is ArcFace's template (or None), warped
    otherwise. Where the model's framing reaches past the crop (dlib's chip does, below the
    chin) the crop's border pixels are repeated, not left black. A crop that is not square is
    taken as the template's square."""
    on_arcface = template is None or np.allclose(template, ARCFACE_112 * size / 112.0, atol=0.5)
    if on_arcface or crop.shape[0] != crop.shape[1]:
        crop = resize(crop, size)
    if on_arcface:
        return crop
    pad = crop.shape[1] // 4
    padded = np.pad(crop, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    source = ARCFACE_112 * crop.shape[1] / 112.0 + pad
    return warp_affine(padded, umeyama(source, np.asarray(template)), (size, size))


def degrade_resolution(image: np.ndarray, size: int) -> np.ndarray:
    """A low-resolution face at the original size: area-averaged down to `size` pixels across
    (the height scaled alike), then bicubically back up."""
    h, w = image.shape[:2]
    small = (max(1, size), max(1, round(h * size / w)))
    low = Image.fromarray(image).resize(small, Image.Resampling.BOX)
    return np.asarray(low.resize((w, h), Image.Resampling.BICUBIC))


def random_similarity(size: int, shift: float, rotate: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A 2x3 similarity (source -> output pixels) turning a size x size crop about its center
    by up to `rotate` degrees, scaling it by up to 1 +- `scale` and moving it by up to
    `shift` * size pixels along each axis."""
    angle = np.deg2rad(rng.uniform(-rotate, rotate))
    s = 1.0 + rng.uniform(-scale, scale)
    tx, ty = rng.uniform(-shift, shift, 2) * size
    c = (size - 1) / 2
    a, b = s * np.cos(angle), s * np.sin(angle)
    return np.array([[a, -b, c - a * c + b * c + tx], [b, a, c - b * c - a * c + ty]])


# Largest shrink of the geometric jitter sampled without antialiasing: the supersampling
# warp_affine does for any shrink doubled the data loaders' time per image for scale jitter of
# a few percent, where bilinear sampling does not alias visibly.
PLAIN_WARP_MAX_SCALE = 0.25


def warp_jitter(image: np.ndarray, matrix: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    size = (image.shape[1], image.shape[0])
    return warp_affine(np.ascontiguousarray(image), matrix, size, antialias=cfg.scale > PLAIN_WARP_MAX_SCALE)


def has_geometry(cfg: AugmentConfig) -> bool:
    return cfg.shift > 0 or cfg.rotate > 0 or cfg.scale > 0


@dataclass
class AugmentDraw:
    """The random choices of one image's augmentation, drawn from its generator in a fixed
    order. Applied to the image in the loader (`Augment`) or, as a row of numbers, to a whole
    batch on the training device (`facerec.data.batch_augment`): the same draws either way."""

    flip: bool = False
    matrix: np.ndarray | None = None  # 2x3 similarity of the geometric jitter (source -> output pixels)
    lowres: int = 0  # pixels across the degraded face; 0: not degraded
    color: np.ndarray | None = None  # brightness, contrast, saturation factors

    ROW = 11  # the numbers of `row()`, laid out as below
    FLIP, MATRIX, LOWRES, COLOR = 0, slice(1, 7), 7, slice(8, 11)

    def row(self) -> np.ndarray:
        """The draws as numbers (an identity matrix and unit factors where nothing was drawn)."""
        out = np.empty(self.ROW, dtype=np.float32)
        out[self.FLIP] = float(self.flip)
        out[self.MATRIX] = (np.eye(2, 3) if self.matrix is None else self.matrix).ravel()
        out[self.LOWRES] = self.lowres
        out[self.COLOR] = np.ones(3) if self.color is None else self.color
        return out


def draw_augment(cfg: AugmentConfig, size: int, rng: np.random.Generator) -> AugmentDraw:
    """One image's augmentation choices; `size`: the side of the square crop it applies to."""
    draw = AugmentDraw()
    if cfg.flip:
        draw.flip = bool(rng.random() < 0.5)
    if has_geometry(cfg):
        draw.matrix = random_similarity(size, cfg.shift, cfg.rotate, cfg.scale, rng)
    if cfg.lowres_prob > 0 and rng.random() < cfg.lowres_prob:
        high = min(cfg.lowres_max_size or size, size)
        low = min(cfg.lowres_min_size, high)
        draw.lowres = int(rng.integers(low, high + 1))
    if cfg.color_jitter > 0:
        draw.color = 1 + rng.uniform(-cfg.color_jitter, cfg.color_jitter, 3)
    return draw


def apply_color(image: np.ndarray, factors: np.ndarray) -> np.ndarray:
    x = image.astype(np.float32) / 255
    brightness, contrast, saturation = factors
    grey = x.mean(2, keepdims=True)
    x = grey + (x - grey) * saturation
    x = (x - x.mean()) * contrast + x.mean()
    return (np.clip(x * brightness, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass
class Augment:
    """The augmentations of one crop, in the loader. `config.pose3d` is not applied here: it
    needs each image's landmarks, so the training set runs it first, on the stored crop
    (facerec.train.builder.TrainingImages, facerec.data.pose_augment)."""

    config: AugmentConfig

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, draw_augment(self.config, image.shape[0], rng))

    def apply(self, image: np.ndarray, draw: AugmentDraw) -> np.ndarray:
        if draw.flip:
            image = image[:, ::-1]
        if draw.matrix is not None:
            image = warp_jitter(image, draw.matrix, self.config)
        if draw.lowres:
            image = degrade_resolution(image, draw.lowres)
        if draw.color is not None:
            image = apply_color(image, draw.color)
        return image


# ---- resolution loss of aligned crops (`--degrade N`, the resolution study) ----------------
TEMPLATE = 112  # side of the template the degraded size is measured on


def template_scale(template: np.ndarray) -> float:
    """Crop pixels per pixel of the 112x112 template: the ratio of the eye distances."""
    eyes = np.linalg.norm(np.asarray(template)[1] - np.asarray(template)[0])
    return float(eyes / np.linalg.norm(ARCFACE_112[1] - ARCFACE_112[0]))


def degrade(crop: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """The crop as it looks when the face had `size` pixels across the 112 template, back at
    its own size. `scale`: the crop's pixels per template pixel (1 for a 112 crop, 36/112 for
    a 36 px model's crop, about 1.51 for dlib's 150 px chip). A crop already that coarse is
    returned as it is."""
    target = round(crop.shape[1] * size / (TEMPLATE * scale))
    return crop if target >= crop.shape[1] else degrade_resolution(crop, max(1, target))


def degrader(size: int, template: np.ndarray = ARCFACE_112) -> Callable[[np.ndarray], np.ndarray]:
    """`degrade` for the crops of a model whose five landmarks sit at `template`."""
    scale = template_scale(template)
    return lambda crop: degrade(crop, size, scale)
