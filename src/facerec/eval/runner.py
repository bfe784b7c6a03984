"""Embedding the images of a protocol (aligning them first when asked) and scoring pairs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from facerec.data.datasets import decode_image
from facerec.data.transforms import resize, to_tensor
from facerec.models.io import Embedder


@dataclass
class EmbeddedImages:
    plain: np.ndarray  # L2-normalized embedding of each image
    flipped: np.ndarray  # L2-normalized (embedding + embedding of the mirror image)
    detected: np.ndarray  # bool: a face was detected (False: fallback crop or no aligner)

    def get(self, flip: bool) -> np.ndarray:
        return self.flipped if flip else self.plain

    def save(self, path: Path, names: Sequence[str | Path], **extra: np.ndarray) -> Path:
        """The embeddings .npz that `facerec eval`, the analysis cache and distillation targets
        share: plain, flipped, detected and the image names (plus any `extra` arrays)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        names = np.array([str(n) for n in names])
        np.savez(path, plain=self.plain, flipped=self.flipped, detected=self.detected, names=names, **extra)
        return path


def rows_by_path(names: Sequence[str]) -> dict[str, int]:
    """The row of each image of an embeddings .npz, keyed by its resolved path."""
    return {str(Path(name).resolve()): i for i, name in enumerate(names)}


def prepare(image: Any, embedder: Embedder, aligner: Any | None) -> tuple[np.ndarray, bool]:
    array = decode_image(image) if isinstance(image, str | Path) else np.asarray(image)
    if aligner is None:
        return resize(array, embedder.input_size), False
    result = aligner.align(array)
    return result.crop, result.face is not None


@torch.no_grad()
def embed_images(
    images: list,
    embedder: Embedder,
    aligner: Any | None = None,
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "embedding",
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> EmbeddedImages:
    """Embeddings with and without flip augmentation in one pass over the images.
    `transform` changes each aligned crop before it is embedded (e.g. a resolution loss)."""
    net = embedder.net.eval()
    plain, flipped, detected = [], [], []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=not progress):
        crops = []
        for image in images[start : start + batch_size]:
            crop, found = prepare(image, embedder, aligner)
            if transform is not None:
                crop = transform(crop)
            crops.append(to_tensor(crop))
            detected.append(found)
        x = torch.stack(crops)
        e, ef = net(x).float(), net(x.flip(3)).float()
        plain.append(torch.nn.functional.normalize(e, dim=1))
        flipped.append(torch.nn.functional.normalize(e + ef, dim=1))
    return EmbeddedImages(torch.cat(plain).numpy(), torch.cat(flipped).numpy(), np.array(detected))
