"""dlib's ResNet face descriptor (128-d, 99.38% on LFW as published) as an nn.Module.

It takes the same input as every facerec backbone, a (N, 3, 150, 150) batch scaled to
[-1, 1], so evaluation, analysis and the CLI treat it like any trained model. Its input must
be a face aligned to `DLIB_150`: the positions that dlib's own `get_face_chip(size=150,
padding=0.25)` gives the five standard landmarks, measured on 299 LFW faces (View 1 training
people) by mapping their 68-point landmarks into dlib's chips. facerec's alignment with this
template reproduces dlib's chips; with MTCNN landmarks it lets any detector feed the model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from facerec.align.dlib_models import dlib_module, model_file
from facerec.core.geometry import DLIB_150

__all__ = ["DLIB_150", "DlibResNet"]


class DlibResNet(nn.Module):
    input_size = 150
    embedding_size = 128
    exportable = False  # dlib computes in its own C++, outside torch: there is no graph to export

    def __init__(self) -> None:
        super().__init__()
        self.model = dlib_module().face_recognition_model_v1(
            str(model_file("dlib_face_recognition_resnet_model_v1.dat"))
        )

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (3, 150, 150):
            raise ValueError(f"dlib's model takes (N, 3, 150, 150) aligned faces, got {tuple(x.shape)}")
        chips = ((x.detach().cpu().float() + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        descriptors = self.model.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return torch.tensor(np.array([np.array(d) for d in descriptors]), dtype=torch.float32)
