from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Face:
    """A detected face: box (x1, y1, x2, y2), detector score, and five landmarks (5, 2) in
    the order left eye, right eye, nose tip, left mouth corner, right mouth corner (as seen
    in the image: 'left' is the smaller x)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


@dataclass
class Aligned:
    """One image's aligned crop, the face it shows and every face the detector found."""

    crop: np.ndarray
    face: Face | None  # None when the crop is the no-face fallback (or the input was already a crop)
    faces: list[Face] = field(default_factory=list)

    @property
    def faces_found(self) -> int:
        return len(self.faces)


def choose_face(faces: list[Face], shape: tuple[int, ...], rule: str) -> Face:
    if rule == "largest":
        return max(faces, key=lambda f: f.area)
    if rule == "best":
        return max(faces, key=lambda f: f.score)
    center = np.array([shape[1] / 2, shape[0] / 2])
    # central: nearest to the image center, ties (and near ties) to the larger face
    return min(faces, key=lambda f: np.linalg.norm(f.center - center) - 0.1 * np.sqrt(f.area))
