"""The gallery store interface: galleries of subjects and their faces, searched by embedding.

A gallery holds the embeddings of one model (its digest) seen through one pipeline; subjects are
the people in it, named by the operator; faces are embeddings of a subject with JSON metadata.
Every backend stores vectors L2-normalized and scores by inner product (cosine). No method
returns a vector except `vectors(...)`, which is asked for explicitly.

A gallery may keep each face's aligned crop (`keep_crops`, chosen when it is created), sealed
like the vectors and erased with them: with the crops, a gallery can be embedded again by a new
model (serve/migrate.py) instead of asking everyone to enroll again. `crops(...)` is the one way
a crop leaves the store.
"""

from __future__ import annotations

import io
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import numpy as np

from facerec.errors import FacerecError

Metadata = dict[str, Any]


# ---- errors --------------------------------------------------------------------------------
class StoreError(FacerecError):
    """The gallery store cannot do what was asked (missing store, bad input, damaged data)."""


class UnknownGallery(StoreError):
    pass


class UnknownSubject(StoreError):
    pass


class UnknownFace(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class ModelMismatch(StoreError):
    """Embeddings of another model: their spaces are not comparable."""


class StoreKeyError(StoreError):
    """No key, a malformed key, or a key that does not open this store."""


# ---- records -------------------------------------------------------------------------------
@dataclass(frozen=True)
class GalleryRecord:
    name: str
    model: str  # the model's name, for messages
    digest: str  # the model's identity (content digest)
    pipeline: Metadata  # how faces were found and embedded (detector, flip, ...)
    dimension: int  # embedding size
    threshold: float | None  # the operator's threshold; None: the model card's for the pipeline
    created: str  # UTC, ISO 8601
    keep_crops: bool = False  # each face's aligned crop is kept (sealed) beside its vector
    migration: Metadata | None = None  # how the vectors came from another model's gallery, if they did


@dataclass(frozen=True)
class SubjectRecord:
    gallery: str
    name: str  # the operator's id for the person, unique in the gallery
    metadata: Metadata
    created: str


@dataclass(frozen=True)
class FaceRecord:
    id: int  # unique in the store, never reused
    gallery: str
    subject: str
    metadata: Metadata
    created: str


@dataclass(frozen=True)
class NewFace:
    """A face to add: the subject it belongs to, its embedding and its metadata."""

    subject: str
    embedding: np.ndarray
    metadata: Metadata = field(default_factory=dict)
    crop: np.ndarray | None = None  # the aligned crop (H, W, 3 uint8): kept only where the gallery keeps crops


@dataclass(frozen=True)
class Match:
    """A subject found by a search, with its best-matching face."""

    subject: str
    face_id: int
    score: float  # cosine similarity of the query and that face


@dataclass(frozen=True)
class GalleryCounts:
    subjects: int
    faces: int


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---- input checks shared by the backends -----------------------------------------------------
def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise StoreError(f"{what} name {name!r} is empty or has leading or trailing spaces")
    return name


def metadata_json(metadata: Metadata | None, what: str) -> str:
    """The metadata as JSON text; anything JSON cannot hold is refused before it is written."""
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise StoreError(f"metadata of {what} must be a JSON object (a dict), not {type(metadata).__name__}")
    try:
        return json.dumps(metadata, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"metadata of {what} is not JSON: {exc}") from exc


def unit_rows(vectors: Any, dimension: int, what: str) -> np.ndarray:
    """`vectors` (one vector or a matrix of rows) as L2-normalized float32 rows of `dimension`
    values; non-finite or zero vectors and other sizes are refused."""
    rows = np.asarray(vectors, dtype=np.float32)
    rows = rows[None] if rows.ndim == 1 else rows
    if rows.ndim != 2 or rows.shape[1] != dimension:
        raise StoreError(f"{what}: expected vectors of {dimension} values, got an array of shape {rows.shape}")
    if not np.isfinite(rows).all():
        raise StoreError(f"{what}: vectors with NaN or infinite values")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if (norms == 0).any():
        raise StoreError(f"{what}: a vector of zeros has no direction")
    return np.ascontiguousarray(rows / norms, dtype=np.float32)


def face_vector(face: NewFace, dimension: int) -> np.ndarray:
    vector = np.asarray(face.embedding, dtype=np.float32)
    if vector.shape != (dimension,):
        raise StoreError(
            f"the face of {face.subject!r}: expected {dimension} values, got an array of shape {vector.shape}"
        )
    return vector


def encode_crop(crop: np.ndarray, what: str) -> bytes:
    """A crop as PNG bytes (lossless: a re-embedding sees the pixels that were enrolled)."""
    from PIL import Image

    array = np.asarray(crop)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise StoreError(f"{what}: a crop is an (H, W, 3) uint8 RGB image, got {array.dtype} of shape {array.shape}")
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def decode_crop(data: bytes, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise StoreError(f"{what}: the stored crop is not an image (damaged store): {exc}") from exc


def migration_json(migration: Metadata | None, what: str) -> str | None:
    return None if migration is None else metadata_json(migration, what)


def check_threshold(threshold: float | None) -> float | None:
    if threshold is not None and not (math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise StoreError(f"gallery threshold {threshold} is not a cosine similarity in [-1, 1]")
    return threshold


def refuse_other_model(record: GalleryRecord, model: str, digest: str, where: str) -> None:
    if record.digest != digest:
        raise ModelMismatch(
            f"gallery '{record.name}' in {where} holds embeddings of model '{record.model}' "
            f"(digest {record.digest[:12]}), not of '{model}' (digest {digest[:12]}): "
            "use that model, or enroll into a new gallery"
        )


# ---- the interface -------------------------------------------------------------------------
class GalleryStore(ABC):
    """What every backend provides. Each write is one transaction: when it returns, it is
    durable; when it raises, nothing of it was written."""

    location: str  # where the store is, for messages

    # galleries
    @abstractmethod
    def create_gallery(
        self,
        name: str,
        model: str,
        digest: str,
        pipeline: Metadata,
        dimension: int,
        threshold: float | None = None,
        keep_crops: bool = False,
        migration: Metadata | None = None,
    ) -> GalleryRecord:
        """A new gallery; `keep_crops`: keep each face's aligned crop; `migration`: the record of
        the gallery its vectors were carried over from (serve/migrate.py)."""

    @abstractmethod
    def gallery(self, name: str) -> GalleryRecord:
        """The gallery called `name`; UnknownGallery when there is none."""

    @abstractmethod
    def galleries(self) -> list[GalleryRecord]: ...

    @abstractmethod
    def delete_gallery(self, name: str) -> None:
        """Erase a gallery with all its subjects and faces."""

    @abstractmethod
    def set_threshold(self, name: str, threshold: float | None) -> GalleryRecord:
        """The operator's threshold for the gallery (None: back to the model card's)."""

    @abstractmethod
    def counts(self, name: str) -> GalleryCounts: ...

    # subjects
    @abstractmethod
    def create_subject(self, gallery: str, name: str, metadata: Metadata | None = None) -> SubjectRecord: ...

    @abstractmethod
    def subjects(self, gallery: str) -> list[SubjectRecord]: ...

    @abstractmethod
    def delete_subject(self, gallery: str, name: str) -> int:
        """Erase a subject and all its faces (never returned by a search again); the number of
        faces erased."""

    # faces
    def add_faces(self, gallery: str, faces: Sequence[NewFace], create_subjects: bool = True) -> list[FaceRecord]:
        """Add faces in one transaction (all or none); subjects that do not exist yet are
        created when `create_subjects`, refused otherwise."""
        record = self.gallery(gallery)
        if not faces:
            return []
        for face in faces:
            check_name(face.subject, "subject")
        texts = [metadata_json(f.metadata, f"the face of {f.subject!r}") for f in faces]
        rows = unit_rows([face_vector(f, record.dimension) for f in faces], record.dimension, "add")
        # a gallery that does not keep crops drops them here: they never reach the backend
        crops = [
            encode_crop(f.crop, f"the face of {f.subject!r}") if record.keep_crops and f.crop is not None else None
            for f in faces
        ]
        return self._insert_faces(record, faces, rows, texts, create_subjects, crops)

    def add_face(
        self, gallery: str, subject: str, embedding: np.ndarray, metadata: Metadata | None = None
    ) -> FaceRecord:
        return self.add_faces(gallery, [NewFace(subject, embedding, metadata or {})])[0]

    @abstractmethod
    def _insert_faces(
        self,
        gallery: GalleryRecord,
        faces: Sequence[NewFace],
        rows: np.ndarray,
        metadata: list[str],
        create_subjects: bool,
        crops: list[bytes | None] | None = None,
    ) -> list[FaceRecord]:
        """Write checked faces: `rows` are their unit vectors, `metadata` their JSON texts,
        `crops` their encoded crops (None: none kept)."""

    @abstractmethod
    def faces(self, gallery: str, subject: str | None = None) -> list[FaceRecord]: ...

    @abstractmethod
    def delete_face(self, gallery: str, face_id: int) -> None: ...

    @abstractmethod
    def vectors(self, gallery: str, face_ids: Sequence[int]) -> np.ndarray:
        """The stored (unit) vectors of these faces, in their order: the one way vectors leave
        the store."""

    @abstractmethod
    def crops(self, gallery: str, face_ids: Sequence[int]) -> list[np.ndarray | None]:
        """The kept crop of each face, in their order (None where none was kept)."""

    # search
    def search(self, gallery: str, queries: Any, k: int = 5) -> list[list[Match]]:
        """For each query vector, the `k` subjects whose best face scores highest, best first."""
        record = self.gallery(gallery)
        if k < 1:
            raise StoreError(f"search: k must be at least 1, not {k}")
        return self._search(record, unit_rows(queries, record.dimension, "search"), k)

    @abstractmethod
    def _search(self, gallery: GalleryRecord, queries: np.ndarray, k: int) -> list[list[Match]]: ...

    # the model check
    def check_model(self, gallery: str, model: str, digest: str) -> GalleryRecord:
        """The gallery, refused (ModelMismatch, naming both models) when another model made it."""
        record = self.gallery(gallery)
        refuse_other_model(record, model, digest, self.location)
        return record

    # upkeep
    @abstractmethod
    def check_integrity(self) -> list[str]:
        """Problems found in the stored data; empty when it is sound."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
