"""Demographically blind embeddings: the directions along which demographic groups' mean
embeddings differ are projected out of a network's output.

Face embeddings carry demographic information: some principal directions of the space line up
with gender and race, and people of one group then score higher against each other than
against others, which is where group false-match differentials come from. Fitted on labelled
faces (e.g. UTKFace's race or gender), the between-group directions span at most groups - 1
dimensions; removing them leaves every identity cue orthogonal to them untouched. The projection
P = I - D^T D is folded into the network's last linear and batch-norm layers, so the result is an
ordinary model file of the same architecture: every command, the ONNX export and the service run
it as they run any other model. The fold holds for inference (the batch norm's running
statistics); training from such a file re-estimates them, and the projection is lost.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from facerec.errors import DataError, FacerecError


@dataclass
class GroupDirections:
    """Orthonormal rows spanning the group means' differences, strongest first."""

    directions: np.ndarray  # (k, d)
    variance_share: np.ndarray  # (k,) share of the between-group variance along each
    group_sizes: dict[str, int]

    def projection(self) -> np.ndarray:
        """P = I - D^T D: removes the directions, keeps their orthogonal complement."""
        d = self.directions
        return np.eye(d.shape[1]) - d.T @ d


def group_directions(
    embeddings: np.ndarray, groups: np.ndarray, components: int | None = None, min_images: int = 20
) -> GroupDirections:
    """The directions of the between-group scatter of L2-normalized `embeddings` (rows labelled
    by `groups`; '' is unlabelled and left out), each group weighted by its size. All of them
    (groups - 1) unless `components` keeps fewer."""
    emb = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    labelled = groups != ""
    names, counts = np.unique(groups[labelled], return_counts=True)
    small = [f"{n} ({c})" for n, c in zip(names, counts, strict=True) if c < min_images]
    if small:
        raise DataError(f"groups with fewer than {min_images} images cannot be fitted: {', '.join(small)}")
    if len(names) < 2:
        raise DataError(f"directions between groups need at least two groups, found {len(names)}: {list(names)}")
    emb, groups = emb[labelled], groups[labelled]
    mean = emb.mean(0)
    weights = np.sqrt(counts / len(emb))
    scatter = np.stack([w * (emb[groups == n].mean(0) - mean) for n, w in zip(names, weights, strict=True)])
    _, singular, vt = np.linalg.svd(scatter, full_matrices=False)
    # sqrt(size) times these rows sum to zero: one direction fewer than groups, at most the dimension
    rank = min(len(names) - 1, emb.shape[1])
    k = rank if components is None else components
    if not 1 <= k <= rank:
        raise DataError(f"{len(names)} groups span at most {rank} directions; asked for {k}")
    if singular[k - 1] < 1e-6 * singular[0]:
        raise DataError(f"the group means span fewer than {k} directions (groups with the same mean): ask for fewer")
    share = singular**2 / (singular**2).sum()
    return GroupDirections(vt[:k], share[:k], dict(zip(names.tolist(), counts.tolist(), strict=True)))


def fold_projection(net: nn.Module, matrix: np.ndarray, input_size: int) -> nn.Module:
    """A copy of `net` (in eval mode) whose output is `matrix` @ net(x): the matrix folded into
    its last linear layer and the batch norm after it, if any, which must end the network
    (checked on random crops of `input_size`)."""
    folded = copy.deepcopy(net).eval()
    linear, norm = output_layers(folded)
    p = torch.as_tensor(matrix, dtype=torch.float64)
    if p.shape != (linear.out_features, linear.out_features):
        raise FacerecError(f"a {tuple(p.shape)} projection does not fit a {linear.out_features}-d embedding")
    with torch.no_grad():
        if norm is None:  # the linear layer ends the network: P (W x + b)
            linear.weight.copy_((p @ linear.weight.double()).float())
            if linear.bias is not None:
                linear.bias.copy_((p @ linear.bias.double()).float())
        else:  # eval-mode batch norm is y = a * u + c; then P y = (P diag(a) W) x + P (a * b + c)
            a = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
            c = norm.bias.double() - a * norm.running_mean.double()
            bias = a * (linear.bias.double() if linear.bias is not None else 0) + c
            linear.weight.copy_((p @ (a[:, None] * linear.weight.double())).float())
            if linear.bias is not None:
                linear.bias.zero_()
            norm.running_mean.zero_()
            norm.running_var.fill_(1 - norm.eps)  # the norm divides by exactly 1
            norm.weight.fill_(1)
            norm.bias.copy_((p @ bias).float())
    check_folded(net, folded, p.float(), input_size)
    return folded


def output_layers(net: nn.Module) -> tuple[nn.Linear, nn.BatchNorm1d | None]:
    """The linear layer that ends an embedding network and the batch norm after it (most facerec
    backbones end so; dlib's network ends in the linear layer alone), or an error naming what was
    found instead."""
    layers = [m for m in net.modules() if isinstance(m, nn.Linear | nn.BatchNorm1d | nn.Conv2d | nn.BatchNorm2d)]
    if layers and isinstance(layers[-1], nn.Linear):
        return layers[-1], None
    if len(layers) < 2 or not (isinstance(layers[-2], nn.Linear) and isinstance(layers[-1], nn.BatchNorm1d)):
        found = ", ".join(type(m).__name__ for m in layers[-2:]) or "nothing"
        raise FacerecError(f"the network does not end in a linear layer (and a batch norm): it ends in {found}")
    norm = layers[-1]
    if not norm.affine or norm.running_mean is None:
        raise FacerecError("the embedding batch norm has no affine parameters or running statistics to fold into")
    return layers[-2], norm


def check_folded(net: nn.Module, folded: nn.Module, matrix: torch.Tensor, size: int) -> None:
    """The folded network's output is the projection of the original's on random crops: the
    last layers really were the output (no operation after them)."""
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net.eval()(x) @ matrix.T
        got = folded(x)
    scale = expected.abs().max().clamp_min(1e-6)
    if not torch.allclose(got, expected, atol=1e-4 * float(scale), rtol=1e-4):
        raise FacerecError("folding the projection changed more than the output: the network does not end in it")
