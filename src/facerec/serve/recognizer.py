"""One-line use: represent, verify, enroll, identify (the surface of deepface, on facerec models).

Every decision the commands print lives here: which threshold applies (the caller's, else the
model card's for this pipeline), when a face is 'same' or 'unknown', which images of a tree were
enrolled and why others were not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerec.align.pipeline import NoFaceError
from facerec.core.images import identity_tree, image_files, require_folder
from facerec.errors import DataError, FacerecError
from facerec.models.card import ThresholdRecord
from facerec.pipeline import RecognitionPipeline
from facerec.serve.gallery import Gallery


@dataclass
class Verification:
    score: float
    threshold: float
    same: bool


@dataclass
class Identification:
    name: str | None  # None: nobody in the gallery scores at or above the threshold
    score: float  # the best score
    threshold: float
    matches: list[tuple[str, float]]  # the top identities, best first


@dataclass
class Enrollment:
    added: int = 0
    skipped: list[str] = field(default_factory=list)  # why each image was not enrolled


class FaceRecognizer:
    """Detect, align and embed faces with one model and one detector; verify and identify."""

    def __init__(
        self,
        model: str = "default",
        detector: str = "mtcnn",
        flip: bool = True,
        threshold: float | None = None,
        device: str = "auto",
        runtime: str | None = None,  # torch or onnx (onnxruntime); None: the model's own
    ) -> None:
        self.pipeline = RecognitionPipeline.load(
            model, runtime, detector=detector, several="largest", missing="skip", flip=flip, device=device
        )
        self.threshold_record = self._threshold(threshold)
        self.threshold = self.threshold_record.value

    def _threshold(self, given: float | None) -> ThresholdRecord:
        if given is not None:
            return ThresholdRecord(given, self.pipeline.detector, self.pipeline.flip, "given by the user")
        record = self.pipeline.threshold()
        if record is None:
            raise FacerecError(
                f"model '{self.pipeline.model.name}' has no calibrated threshold for detector "
                f"'{self.pipeline.detector}': pass one (--threshold)"
            )
        return record

    @property
    def model_name(self) -> str:
        return self.pipeline.model.name

    def represent(self, image: str | Path | np.ndarray) -> np.ndarray:
        """L2-normalized embedding of the (largest) face of an image path or RGB array."""
        return self.pipeline.represent(image)

    def verify(self, image1: Any, image2: Any) -> Verification:
        score = float(self.represent(image1) @ self.represent(image2))
        return Verification(score, self.threshold, score >= self.threshold)

    # ---- galleries ------------------------------------------------------------------------
    def open_gallery(self, path: str | Path, create: bool = False) -> Gallery:
        """The gallery at `path` (a new one when `create` and there is none), refused when it
        holds another model's embeddings."""
        path = Path(path)
        if create and not path.exists():
            return Gallery.for_pipeline(self.pipeline)
        gallery = Gallery.load(path)
        gallery.check_model(self.pipeline, path)
        return gallery

    def enroll_tree(self, gallery: Gallery, root: str | Path, name: str | None = None) -> Enrollment:
        """Enroll `root/<person>/<images>` (or every image under `root` as `name`). Images with no
        face or that cannot be read are skipped, with the reason; nothing enrolled is an error."""
        root = require_folder(root, "folder")
        if name:
            jobs = [(name, path) for path in image_files(root)]
        else:
            jobs = [(person.name, path) for person in identity_tree(root, "folder") for path in person.images]
        report = Enrollment()
        for person, image in jobs:
            try:
                gallery.add(person, self.represent(image), str(image))
                report.added += 1
            except (NoFaceError, DataError) as exc:
                report.skipped.append(str(exc))
        if not report.added:
            raise FacerecError(f"nothing enrolled from {root}: no image with a face")
        return report

    def identify(self, gallery: Gallery, image: Any, top: int = 5) -> Identification:
        matches = gallery.search(self.represent(image), top)
        best_name, best_score = matches[0]
        known = best_score >= self.threshold
        return Identification(best_name if known else None, best_score, self.threshold, matches)
