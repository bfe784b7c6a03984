"""One-line use: represent, verify, identify (the surface of deepface, on facerec models)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facerec.align.pipeline import DETECTORS, Aligner, AlignPolicy
from facerec.data.transforms import to_tensor
from facerec.errors import FacerecError
from facerec.eval.embed import embed_batches
from facerec.models.io import load_embedder

# Cosine thresholds for 'same person', calibrated on LFW View 2 (mean of the ten fold
# thresholds of the 10-fold protocol, with flip augmentation); see docs/benchmarks.md.
CALIBRATED_THRESHOLDS = {("dlib", "mtcnn"): 0.9116}


@dataclass
class Verification:
    score: float
    threshold: float
    same: bool


class FaceRecognizer:
    """Detect, align and embed faces with one model and one detector."""

    def __init__(
        self, model: str = "default", detector: str = "mtcnn", flip: bool = True, threshold: float | None = None
    ) -> None:
        self.embedder = load_embedder(model)
        size = (self.embedder.input_size, self.embedder.input_size)
        self.aligner = Aligner(
            DETECTORS.build(detector), self.embedder.template, size, AlignPolicy(several="largest", missing="skip")
        )
        self.flip = flip
        self.threshold = threshold if threshold is not None else self.default_threshold(model, detector)

    def default_threshold(self, model: str, detector: str) -> float:
        if (model, detector) in CALIBRATED_THRESHOLDS:
            return CALIBRATED_THRESHOLDS[(model, detector)]
        if self.embedder.threshold is not None:
            return self.embedder.threshold
        raise FacerecError(
            f"no calibrated threshold for model '{model}' with detector '{detector}': pass one (--threshold)"
        )

    @torch.no_grad()
    def represent(self, image: str | Path | np.ndarray) -> np.ndarray:
        """L2-normalized embedding of the (largest) face of an image path or RGB array."""
        if isinstance(image, str | Path):
            crop = self.aligner.align_file(image).crop  # its no-face error names the file
        else:
            crop = self.aligner.align(np.asarray(image)).crop
        return embed_batches(self.embedder.net, to_tensor(crop)[None], self.flip)[0].numpy()

    def verify(self, image1: Any, image2: Any) -> Verification:
        score = float(self.represent(image1) @ self.represent(image2))
        return Verification(score, self.threshold, score >= self.threshold)
