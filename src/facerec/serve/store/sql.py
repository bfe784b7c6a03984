"""What the two SQL gallery stores (SQLite, PostgreSQL) share: the rows' layout and the reads.

Both keep galleries, subjects and faces in the same three tables and seal each face's vector
(and kept crop) with its id as associated data; the queries that only read differ in nothing but
the parameter marker, so they are written once here with `?` and each backend names its marker.
Writes stay with each backend: transactions, id allocation and index freshness differ.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from facerec.serve.store.base import (
    FaceRecord,
    GalleryCounts,
    GalleryRecord,
    GalleryStore,
    Metadata,
    StoreError,
    StoreKeyError,
    SubjectRecord,
    UnknownFace,
    UnknownGallery,
    UnknownSubject,
    check_name,
    check_threshold,
    decode_crop,
    metadata_json,
    migration_json,
    utc_now,
)
from facerec.serve.store.crypto import KEY_ENV, PlainVectors, VectorCipher

log = logging.getLogger(__name__)


def face_aad(face_id: int) -> bytes:
    return f"face {face_id}".encode()


def crop_aad(face_id: int) -> bytes:
    """Another name than the vector's: a sealed crop copied onto the vector column does not open."""
    return f"crop {face_id}".encode()


GALLERY_COLUMNS = "name, model, digest, pipeline, dimension, threshold, created, keep_crops, migration"
ENCRYPTION_NONE, ENCRYPTION_AES_GCM = "none", "aes-256-gcm"
KEY_CHECK = b"facerec gallery store"  # sealed with the key at creation: a wrong key fails to open it
VECTOR_DTYPE = np.dtype("<f4")


def new_gallery_record(
    name: str,
    model: str,
    digest: str,
    pipeline: Metadata,
    dimension: int,
    threshold: float | None,
    keep_crops: bool,
    migration: Metadata | None,
) -> GalleryRecord:
    """The record of a new gallery, its input checked (both backends)."""
    check_name(name, "gallery")
    if not digest:
        raise StoreError(f"gallery '{name}': the model's digest is empty (a gallery records which model made it)")
    if int(dimension) < 1:
        raise StoreError(f"gallery '{name}': embedding size {dimension} is not positive")
    metadata_json(pipeline, f"gallery '{name}'")
    migration_json(migration, f"the migration record of gallery '{name}'")
    kept, threshold = bool(keep_crops), check_threshold(threshold)
    return GalleryRecord(name, model, digest, pipeline, int(dimension), threshold, utc_now(), kept, migration)


def gallery_row(record: GalleryRecord) -> tuple[Any, ...]:
    """The values of GALLERY_COLUMNS for a record."""
    return (
        record.name,
        record.model,
        record.digest,
        metadata_json(record.pipeline, f"gallery '{record.name}'"),
        record.dimension,
        record.threshold,
        record.created,
        int(record.keep_crops),
        migration_json(record.migration, f"gallery '{record.name}'"),
    )


def gallery_record(row: Sequence[Any]) -> GalleryRecord:
    """A record from the values of GALLERY_COLUMNS (both backends)."""
    name, model, digest, pipeline, dimension, threshold, created, keep_crops, migration = row
    return GalleryRecord(
        name,
        model,
        digest,
        json.loads(pipeline),
        dimension,
        threshold,
        created,
        bool(keep_crops),
        None if migration is None else json.loads(migration),
    )


class SQLStore(GalleryStore):
    """The reads of a gallery store over the facerec tables. A backend sets `marker` (its
    parameter placeholder) and `row_lock` (what locks a gallery's row in a write, if anything),
    and provides `location`, `_lock`, `_db` (a connection with `execute`) and `_cipher`."""

    marker = "?"
    row_lock = ""
    location: str
    _lock: threading.RLock
    _cipher: VectorCipher | PlainVectors

    @property
    @abstractmethod
    def _db(self) -> Any:
        """The open connection (reconnected where the backend can)."""

    def _run(self, query: str, args: Sequence[Any] = ()) -> Any:
        """`query` written with `?` markers, run with this backend's."""
        return self._db.execute(query.replace("?", self.marker), tuple(args))

    def _cipher_for(self, meta: dict[str, str], key: bytes | None) -> VectorCipher | PlainVectors:
        """What seals this store's vectors, from its meta rows: a store made without a key stays
        plaintext; an encrypted one opens only with the key that sealed its key check."""
        if meta.get("encryption") == ENCRYPTION_NONE:
            if key is not None:
                raise StoreKeyError(
                    f"gallery store {self.location} keeps its vectors unencrypted (it was created without a key), "
                    f"so a key does not apply: open it without one (no key file, {KEY_ENV} unset)"
                )
            log.warning(
                "gallery store %s: vectors are NOT encrypted (plaintext store, tests/development)", self.location
            )
            return PlainVectors()
        if key is None:
            raise StoreKeyError(f"gallery store {self.location} is encrypted: set {KEY_ENV} or give its key file")
        cipher = VectorCipher(key)
        try:
            cipher.open(bytes.fromhex(meta["key_check"]), b"key check")
        except StoreKeyError:
            raise StoreKeyError(f"the key given does not open gallery store {self.location} (wrong key)") from None
        return cipher

    # ---- galleries ----------------------------------------------------------------------------
    def _gallery_row(self, name: str, lock: bool = False) -> tuple[int, GalleryRecord]:
        query = f"SELECT id, {GALLERY_COLUMNS} FROM galleries WHERE name = ?" + (self.row_lock if lock else "")
        row = self._run(query, (name,)).fetchone()
        if row is None:
            names = [r[0] for r in self._run("SELECT name FROM galleries ORDER BY name")]
            known = f"galleries: {', '.join(names)}" if names else "it has no gallery yet"
            raise UnknownGallery(f"no gallery '{name}' in {self.location} ({known})")
        return row[0], gallery_record(row[1:])

    def gallery(self, name: str) -> GalleryRecord:
        with self._lock:
            return self._gallery_row(name)[1]

    def galleries(self) -> list[GalleryRecord]:
        with self._lock:
            rows = self._run(f"SELECT {GALLERY_COLUMNS} FROM galleries ORDER BY name").fetchall()
        return [gallery_record(row) for row in rows]

    def counts(self, name: str) -> GalleryCounts:
        with self._lock:
            gallery_id, _ = self._gallery_row(name)
            subjects, faces = self._run(
                "SELECT COUNT(DISTINCT s.id), COUNT(f.id) FROM subjects s LEFT JOIN faces f ON f.subject_id = s.id "
                "WHERE s.gallery_id = ?",
                (gallery_id,),
            ).fetchone()
        return GalleryCounts(subjects, faces)

    # ---- subjects -----------------------------------------------------------------------------
    def _subject_id(self, gallery_id: int, name: str) -> int | None:
        row = self._run("SELECT id FROM subjects WHERE gallery_id = ? AND name = ?", (gallery_id, name)).fetchone()
        return None if row is None else row[0]

    def _known_subject_id(self, gallery_id: int, gallery: str, name: str) -> int:
        subject_id = self._subject_id(gallery_id, name)
        if subject_id is None:
            raise UnknownSubject(f"no subject '{name}' in gallery '{gallery}'")
        return subject_id

    def subjects(self, gallery: str) -> list[SubjectRecord]:
        with self._lock:
            gallery_id, _ = self._gallery_row(gallery)
            rows = self._run(
                "SELECT name, metadata, created FROM subjects WHERE gallery_id = ? ORDER BY name", (gallery_id,)
            ).fetchall()
        return [SubjectRecord(gallery, name, json.loads(meta), created) for name, meta, created in rows]

    # ---- faces --------------------------------------------------------------------------------
    def _seal(self, face_id: int, row: np.ndarray) -> bytes:
        return self._cipher.seal(row.astype(VECTOR_DTYPE).tobytes(), face_aad(face_id))

    def _seal_crops(self, ids: list[int], crops: list[bytes | None]) -> list[bytes | None]:
        return [None if c is None else self._cipher.seal(c, crop_aad(i)) for i, c in zip(ids, crops, strict=True)]

    def _unseal(self, face_id: int, blob: bytes, dimension: int) -> np.ndarray:
        vector = np.frombuffer(self._cipher.open(bytes(blob), face_aad(face_id)), dtype=VECTOR_DTYPE)
        if vector.shape != (dimension,):
            raise StoreError(
                f"face {face_id} in {self.location} holds {vector.size} values, not {dimension}: damaged store"
            )
        return vector

    def faces(self, gallery: str, subject: str | None = None) -> list[FaceRecord]:
        with self._lock:
            gallery_id, _ = self._gallery_row(gallery)
            query = (
                "SELECT f.id, s.name, f.metadata, f.created FROM faces f JOIN subjects s ON s.id = f.subject_id "
                "WHERE s.gallery_id = ?"
            )
            args: tuple[Any, ...] = (gallery_id,)
            if subject is not None:
                query, args = query + " AND s.id = ?", (*args, self._known_subject_id(gallery_id, gallery, subject))
            rows = self._run(query + " ORDER BY f.id", args).fetchall()
        return [FaceRecord(i, gallery, name, json.loads(meta), created) for i, name, meta, created in rows]

    def vectors(self, gallery: str, face_ids: Sequence[int]) -> np.ndarray:
        with self._lock:
            gallery_id, record = self._gallery_row(gallery)
            found = {}
            for face_id in dict.fromkeys(int(i) for i in face_ids):
                blob = self._face_cell(gallery, gallery_id, face_id, "vector")
                found[face_id] = self._unseal(face_id, blob, record.dimension)
        return np.stack([found[int(i)] for i in face_ids]) if found else np.zeros((0, record.dimension), np.float32)

    def crops(self, gallery: str, face_ids: Sequence[int]) -> list[np.ndarray | None]:
        with self._lock:
            gallery_id, _ = self._gallery_row(gallery)
            found = []
            for face_id in (int(i) for i in face_ids):
                blob = self._face_cell(gallery, gallery_id, face_id, "crop")
                found.append(None if blob is None else self._open_crop(face_id, blob))
        return found

    def _face_cell(self, gallery: str, gallery_id: int, face_id: int, column: Literal["vector", "crop"]) -> Any:
        """One column (vector or crop) of a face of this gallery; UnknownFace if it is not there."""
        row = self._run(
            f"SELECT f.{column} FROM faces f JOIN subjects s ON s.id = f.subject_id "
            "WHERE f.id = ? AND s.gallery_id = ?",
            (face_id, gallery_id),
        ).fetchone()
        if row is None:
            raise UnknownFace(f"no face {face_id} in gallery '{gallery}'")
        return row[0]

    def _open_crop(self, face_id: int, blob: bytes) -> np.ndarray:
        return decode_crop(self._cipher.open(bytes(blob), crop_aad(face_id)), f"face {face_id} in {self.location}")
