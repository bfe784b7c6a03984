"""The crop a gallery keeps of each face: one frame for every model, so a later model can embed it.

A model's own crop is cut for that model (its template, its size: 64 px for the default model,
dlib's 150 px chip holds more of the head); a gallery that may move to another model keeps a
crop in a model-independent frame instead: the ArcFace five-point template at 112 px, with a
16 px margin on every side (144 x 144). The margin covers dlib's chip (which reaches 10 px below
the 112 crop); any model's crop is then one similarity warp of the kept crop.
"""

from __future__ import annotations

import numpy as np

from facerec.core.geometry import ARCFACE_112, umeyama, warp_affine

KEPT_MARGIN = 16
KEPT_SIZE = 112 + 2 * KEPT_MARGIN
KEPT_TEMPLATE = ARCFACE_112 + KEPT_MARGIN  # the five landmarks in the kept crop


def kept_from_landmarks(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The kept crop of a face found in `image` (RGB uint8) with these five landmarks."""
    return warp_affine(image, umeyama(np.asarray(landmarks), KEPT_TEMPLATE), (KEPT_SIZE, KEPT_SIZE))


def kept_from_crop(crop: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The kept crop of a face already aligned onto `template` (its five points in `crop`);
    what the crop does not cover stays black."""
    return warp_affine(crop, umeyama(np.asarray(template), KEPT_TEMPLATE), (KEPT_SIZE, KEPT_SIZE))


def model_crop(kept: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """A model's crop (its template, size x size) cut from a kept crop."""
    return warp_affine(kept, umeyama(KEPT_TEMPLATE, np.asarray(template)), (size, size))
