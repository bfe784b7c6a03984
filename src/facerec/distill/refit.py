"""Refitting a student's output layer to the teacher before distillation starts.

A network started from weights trained for another input (dlib's 150 px network fed 128 px
crops) still separates people, but its embeddings move as a whole: cosine 0.62 to the 150 px
teacher's on the same faces. Gradient steps would spend the start of the run undoing that shift
in every layer. The output layer is linear, so the map from its inputs to the teacher's
embeddings that fits best is a least-squares solve: done once, before the first step (cosine
0.96 in that case), it leaves the steps the part a linear map cannot do.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facerec.errors import ConfigError

log = logging.getLogger("facerec.train")


def output_layer(backbone: nn.Module) -> nn.Linear:
    """The backbone's last layer when it is linear without a bias (its output is the embedding)."""
    layer = getattr(backbone, "output", None)
    if not isinstance(layer, nn.Linear) or layer.bias is not None:
        raise ConfigError(
            f"distill.fit_output needs a backbone whose output layer is one bias-free linear layer "
            f"({type(backbone).__name__} has none): set distill.fit_output: 0"
        )
    return layer


@torch.no_grad()
def fit_output_layer(
    backbone: nn.Module, images: torch.utils.data.Dataset, count: int, seed: int, workers: int = 0
) -> tuple[float, float]:
    """Replace the output layer W by the least-squares fit of the teacher's embeddings T on its
    own inputs: W' = (A W) with A = argmin ||S A - T||, S the current embeddings of `count`
    training images (drawn with `seed`, not augmented). Returns the mean cosine to the teacher
    before and after, on those images."""
    layer = output_layer(backbone)
    chosen = np.random.default_rng(seed).choice(len(images), min(count, len(images)), replace=False)
    loader = torch.utils.data.DataLoader(  # its own generator: the run's random state stays as it was
        torch.utils.data.Subset(images, [int(i) for i in chosen]),
        batch_size=100,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )
    was_training = backbone.training
    backbone.eval()
    device = layer.weight.device
    ours, theirs = [], []
    for batch in loader:
        ours.append(backbone(batch["image"].to(device)).double().cpu())
        theirs.append(batch["target"].double())
    backbone.train(was_training)
    s, t = torch.cat(ours), torch.cat(theirs)
    fit = torch.linalg.lstsq(s, t).solution  # s @ fit ~ t
    layer.weight.copy_((layer.weight.double().T.cpu() @ fit).T.to(layer.weight))
    before = F.cosine_similarity(s, t).mean().item()
    after = F.cosine_similarity(s @ fit, t).mean().item()
    log.info("output layer fitted to the teacher on %d images: mean cosine %.4f -> %.4f", len(chosen), before, after)
    return before, after
