"""Embedding images with a backbone."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from facerec.data.datasets import FaceDataset


@torch.no_grad()
def embed_batches(model: nn.Module, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Embeddings of a batch; with flip, the sum of the image's and its mirror's (then L2-normalized)."""
    emb = model(images)
    if flip:
        emb = emb + model(images.flip(3))
    return torch.nn.functional.normalize(emb.float(), dim=1)


@torch.no_grad()
def embed_dataset(
    model: nn.Module,
    dataset: FaceDataset,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    flip: bool = False,
    progress: bool = False,
    num_workers: int = 0,
) -> np.ndarray:
    """L2-normalized embeddings of every image of a dataset (no augmentation), in order."""
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    out = []
    for images, _ in tqdm(loader, desc="embedding", unit="batch", disable=not progress, leave=False):
        out.append(embed_batches(model, images.to(device), flip).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()
