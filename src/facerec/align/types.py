from __future__ import annotations

from dataclasses import dataclass

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
