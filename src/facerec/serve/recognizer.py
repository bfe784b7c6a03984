"""One-line use: represent, verify, enroll, identify, on facerec models and a gallery store.

Every decision the commands print lives here: which threshold applies (the caller's, else the
gallery's, else the model card's for this pipeline), when a face is 'same' or 'unknown', which
images of a tree were enrolled and why others were not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerec.align.pipeline import NoFaceError
from facerec.core.images import identity_tree, image_files, require_folder
from facerec.data.transforms import to_tensor
from facerec.errors import DataError, FacerecError
from facerec.eval.quality import DEFAULT_SCORER, build_scorer
from facerec.models.card import ThresholdRecord
from facerec.pipeline import RecognitionPipeline
from facerec.serve.store import GalleryRecord, GalleryStore, Match, NewFace, UnknownGallery

USER_GIVEN = "given by the user"


class LowQuality(DataError):
    """A face below the quality the caller asked for (min_quality)."""


def check_min_quality(min_quality: float | None) -> None:
    if min_quality is not None and not 0.0 <= min_quality <= 1.0:
        raise FacerecError(f"min_quality is a quality score in [0, 1], got {min_quality}")


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
    matches: list[Match]  # the top subjects with their best face, best first


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
        quality: str = DEFAULT_SCORER,  # face quality scorer (facerec.eval.quality.QUALITY)
    ) -> None:
        self.scorer = build_scorer(quality)  # an unknown name fails before the model loads
        self.pipeline = RecognitionPipeline.load(
            model, runtime, detector=detector, several="largest", missing="skip", flip=flip, device=device
        )
        self.threshold_record = self._threshold(threshold)
        self.threshold = self.threshold_record.value

    def _threshold(self, given: float | None) -> ThresholdRecord:
        if given is not None:
            return ThresholdRecord(given, self.pipeline.detector, self.pipeline.flip, USER_GIVEN)
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

    def assess(self, image: str | Path | np.ndarray) -> tuple[np.ndarray, float]:
        """The embedding of the (largest) face of an image and its quality in [0, 1], from one
        alignment."""
        aligned = self.pipeline.align(image)
        crop = to_tensor(aligned.crop)[None]
        quality = float(self.scorer(self.pipeline, crop, [aligned.face])[0])
        return self.pipeline.embed_tensors(crop)[0].cpu().numpy(), quality

    def gated(self, image: Any, min_quality: float | None) -> tuple[np.ndarray, float | None]:
        """The embedding of an image's face, refused (LowQuality) below `min_quality`; its
        quality when it was scored (only with a gate: scoring costs model calls)."""
        if min_quality is None:
            return self.represent(image), None
        embedding, quality = self.assess(image)
        if quality < min_quality:
            raise LowQuality(
                f"{image if isinstance(image, str | Path) else 'the image'}: face quality {quality:.3f} "
                f"({self.scorer.name}) is below --min-quality {min_quality:g}"
            )
        return embedding, quality

    def verify(self, image1: Any, image2: Any) -> Verification:
        score = float(self.represent(image1) @ self.represent(image2))
        return Verification(score, self.threshold, score >= self.threshold)

    # ---- galleries ----------------------------------------------------------------------
    def open_gallery(
        self, store: GalleryStore, name: str, create: bool = False, keep_crops: bool = False
    ) -> GalleryRecord:
        """The gallery `name` of `store` (made for this pipeline when `create` and there is none,
        keeping each face's aligned crop if `keep_crops`), refused when another model's
        embeddings are in it."""
        model = self.pipeline.model
        try:
            record = store.check_model(name, model.name, model.digest)
        except UnknownGallery:
            if not create:
                raise
            pipeline = self.pipeline.describe()
            size = model.card.embedding_size
            return store.create_gallery(name, model.name, model.digest, pipeline, size, keep_crops=keep_crops)
        if keep_crops and not record.keep_crops:
            raise FacerecError(
                f"gallery '{name}' was created without keeping crops (chosen when a gallery is created): "
                "enroll into a new gallery to keep them"
            )
        return record

    def enroll_tree(
        self,
        store: GalleryStore,
        gallery: str,
        root: str | Path,
        name: str | None = None,
        min_quality: float | None = None,
        keep_crops: bool = False,
    ) -> Enrollment:
        """Enroll `root/<person>/<images>` (or every image under `root` as `name`) into `gallery`,
        one transaction per person, so an interrupted run keeps the people it finished. Images
        with no face, a face below `min_quality` (its quality then goes into the face's metadata)
        or that cannot be read are skipped, with the reason; nothing enrolled is an error. A new
        gallery keeps each face's aligned crop when `keep_crops` (for a later model: serve/migrate.py)."""
        check_min_quality(min_quality)
        jobs = enrollment_jobs(root, name)  # a bad folder is refused before a gallery is made
        record = self.open_gallery(store, gallery, create=True, keep_crops=keep_crops)
        report = Enrollment()
        for person, images in jobs:
            faces = self._faces_of(person, images, report.skipped, min_quality, record.keep_crops)
            store.add_faces(gallery, faces)
            report.added += len(faces)
        if not report.added:
            gate = f" of quality >= {min_quality:g}" if min_quality is not None else ""
            example = f" ({len(report.skipped)} skipped, e.g. {report.skipped[0]})" if report.skipped else ""
            raise FacerecError(f"nothing enrolled from {root}: no image with a face{gate}{example}")
        return report

    def _faces_of(
        self, person: str, images: list[Path], skipped: list[str], min_quality: float | None, keep_crops: bool
    ) -> list[NewFace]:
        faces = []
        for image in images:
            try:
                embedding, quality, crop = self._face(image, min_quality, keep_crops)
            except (NoFaceError, DataError) as exc:  # LowQuality too
                skipped.append(str(exc))
                continue
            metadata: dict[str, Any] = {"source": str(image)}
            if quality is not None:
                metadata["quality"] = round(quality, 4)
            faces.append(NewFace(person, embedding, metadata, crop))
        return faces

    def _face(
        self, image: Path, min_quality: float | None, keep_crop: bool
    ) -> tuple[np.ndarray, float | None, np.ndarray | None]:
        """The embedding, the quality (when gated) and the kept crop (when asked) of an image."""
        if keep_crop and min_quality is None:
            embedding, crop = self.pipeline.represent_keeping_crop(image)  # one alignment for both
            return embedding, None, crop
        embedding, quality = self.gated(image, min_quality)
        return embedding, quality, self.pipeline.represent_keeping_crop(image)[1] if keep_crop else None

    def threshold_for(self, gallery: GalleryRecord) -> float:
        """The caller's threshold, else the gallery's (set by its operator), else the model card's."""
        if gallery.threshold is not None and self.threshold_record.data != USER_GIVEN:
            return gallery.threshold
        return self.threshold

    def identify(
        self, store: GalleryStore, gallery: str, image: Any, top: int = 5, min_quality: float | None = None
    ) -> Identification:
        """The best subjects for the face of `image`; a probe face below `min_quality` is refused
        (LowQuality) rather than searched."""
        check_min_quality(min_quality)
        record = self.open_gallery(store, gallery)
        matches = store.search(gallery, self.gated(image, min_quality)[0], top)[0]
        if not matches:
            raise FacerecError(f"gallery '{gallery}' in {store.location} is empty: enroll someone (`facerec enroll`)")
        threshold = self.threshold_for(record)
        best = matches[0]
        known = best.score >= threshold
        return Identification(best.subject if known else None, best.score, threshold, matches)


def enrollment_jobs(root: str | Path, name: str | None) -> list[tuple[str, list[Path]]]:
    """(person, images) pairs: one per identity folder, or every image of `root` as `name`."""
    root = require_folder(root, "folder")
    if name:
        return [(name, image_files(root))]
    return [(person.name, person.images) for person in identity_tree(root, "folder")]
