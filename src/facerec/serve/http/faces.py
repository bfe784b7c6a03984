"""What the service does with a decoded image: find every face, crop faces for the model, embed
crops, and pick the one face a comparison needs. Nothing here knows about HTTP but the errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from facerec.align.types import Face
from facerec.data.transforms import to_tensor
from facerec.errors import FacerecError
from facerec.eval.quality import DEFAULT_SCORER, build_scorer
from facerec.models.card import ThresholdRecord
from facerec.pipeline import RecognitionPipeline
from facerec.serve.http.errors import ServiceError
from facerec.serve.http.settings import ServiceSettings

SEVERAL_POLICIES = ("error", "largest")  # several faces where one is needed: refuse, or take the largest


@dataclass
class Sighting:
    """One decoded image and every face found in it."""

    image: np.ndarray
    faces: list[Face]


class FaceService:
    """A recognition pipeline seen face by face: detection, crops, embeddings, the threshold."""

    def __init__(self, pipeline: RecognitionPipeline, quality: str = DEFAULT_SCORER) -> None:
        aligner = pipeline.aligner
        if aligner is None or not hasattr(aligner, "detector") or not hasattr(aligner, "crop"):
            raise FacerecError(
                f"the service needs a detector that finds every face (mtcnn or dlib), not '{pipeline.detector}'"
            )
        self.pipeline, self.aligner = pipeline, aligner
        self.scorer = build_scorer(quality)

    @classmethod
    def load(cls, settings: ServiceSettings) -> FaceService:
        pipeline = RecognitionPipeline.load(
            settings.model, settings.runtime, detector=settings.detector, flip=True, device=settings.device
        )
        return cls(pipeline, settings.quality)

    def describe(self) -> dict[str, Any]:
        model = self.pipeline.model
        return {
            "name": model.name,
            "digest": model.digest,
            "detector": self.pipeline.detector,
            "embedding_size": model.card.embedding_size,
            "input_size": model.input_size,
            "flip": self.pipeline.flip,
        }

    def check_model(self, asked: Any) -> None:
        """A client may pin the model it expects (by name or digest): embeddings of two models
        are not comparable, so a mismatch is an error rather than a silent wrong answer."""
        if asked is None:
            return
        model = self.pipeline.model
        if str(asked) not in (model.name, model.digest):
            raise ServiceError(
                422, "wrong_model", f"this server runs model '{model.name}' (digest {model.digest}), not '{asked}'"
            )

    def threshold(self) -> ThresholdRecord | None:
        return self.pipeline.threshold()

    def detect(self, image: np.ndarray) -> list[Face]:
        return list(self.aligner.detector.detect(image))

    def crops(self, sighting: Sighting, faces: list[Face]) -> list[np.ndarray]:
        """The model's crop of each face: its landmarks moved onto the model's template."""
        return [self.aligner.crop(sighting.image, face) for face in faces]

    def embed_crops(self, crops: list[np.ndarray], max_batch: int) -> np.ndarray:
        """L2-normalized embeddings (flip-summed when the pipeline flips), at most `max_batch`
        crops per network call."""
        parts = []
        for start in range(0, len(crops), max_batch):
            batch = torch.stack([to_tensor(crop) for crop in crops[start : start + max_batch]])
            parts.append(self.pipeline.embed_tensors(batch).cpu().numpy())
        return np.concatenate(parts)

    def qualities(self, sighting: Sighting, faces: list[Face]) -> list[float]:
        """The quality scorer's value in [0, 1] for each face (facerec.eval.quality), all faces in
        one model call."""
        if not faces:
            return []
        crops = torch.zeros(0)
        if self.scorer.needs_crops:
            crops = torch.stack([to_tensor(crop) for crop in self.crops(sighting, faces)])
        return [float(q) for q in self.scorer(self.pipeline, crops, faces)]


def one_face(sighting: Sighting, index: int, several: str) -> Face:
    """The face of an image that must show one; the largest of several when `several` says so."""
    faces = sighting.faces
    if not faces:
        raise ServiceError(422, "no_face", f"no face detected in images[{index}]")
    if len(faces) > 1 and several != "largest":
        raise ServiceError(
            422,
            "several_faces",
            f"images[{index}] shows {len(faces)} faces where one is required; crop it, or send several=largest",
        )
    return max(faces, key=lambda face: face.area)


def several_policy(value: Any) -> str:
    policy = "error" if value is None else str(value)
    if policy not in SEVERAL_POLICIES:
        raise ServiceError(422, "invalid_option", f"several must be {' or '.join(SEVERAL_POLICIES)}, not '{policy}'")
    return policy


def threshold_option(value: Any, card: ThresholdRecord | None) -> tuple[float, str]:
    """The request's threshold, else the model card's for this detector; (value, where from)."""
    if value is not None:
        try:
            threshold = float(value)
        except (TypeError, ValueError):
            threshold = float("nan")
        if not -1.0 <= threshold <= 1.0:  # NaN fails too
            raise ServiceError(422, "invalid_option", f"threshold must be a cosine in [-1, 1], not '{value}'")
        return threshold, "request"
    if card is None:
        raise ServiceError(
            422, "no_threshold", "the model has no calibrated threshold for this detector: send one (threshold)"
        )
    return card.value, f"model card: {card.data}"


def min_quality_option(value: Any) -> float | None:
    """The request's enrolment gate: a quality in [0, 1], or None (no gate)."""
    if value is None:
        return None
    try:
        minimum = float(value)
    except (TypeError, ValueError):
        minimum = float("nan")
    if not 0.0 <= minimum <= 1.0:  # NaN fails too
        raise ServiceError(422, "invalid_option", f"min_quality must be a number in [0, 1], not '{value}'")
    return minimum


def quality_gate(qualities: list[float], minimum: float | None, scorer: str) -> None:
    """Refuse the request (422 quality_too_low) when any face's quality is below `minimum`."""
    if minimum is None:
        return
    low = [(i, q) for i, q in enumerate(qualities) if q < minimum]
    if low:
        listed = ", ".join(f"images[{i}] {q:.3f}" for i, q in low)
        raise ServiceError(
            422,
            "quality_too_low",
            f"face quality ({scorer}) below min_quality {minimum:g}: {listed}; send a sharper, larger, frontal photo",
        )


def quality_wanted(value: Any) -> bool:
    """The `quality` flag of endpoints where it costs extra model calls (embed, verify, search)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ServiceError(422, "invalid_option", f"quality must be true or false, not '{value}'")
    return text in ("true", "1")
