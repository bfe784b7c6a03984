"""The embedded gallery store: one SQLite file, the search index in memory.

Durability: WAL journal with `synchronous=FULL`, one transaction per operation, so a write that
returned survives a crash or power loss, and a write that raised left nothing behind. Erasure:
`secure_delete` overwrites deleted rows, and a checkpoint after each deletion moves the
overwritten pages out of the write-ahead log. Vectors are float32 BLOBs, sealed with AES-GCM
when the store has a key (crypto.py); so are the crops of galleries that keep them (PNG bytes, in
the face's row: erased with it). The index of a gallery is built from the file the first
time it is searched (`warm` builds them all at start) and rebuilt when another process wrote to
the file since.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from facerec.serve.store.base import (
    AlreadyExists,
    FaceRecord,
    GalleryRecord,
    Match,
    Metadata,
    NewFace,
    StoreError,
    StoreKeyError,
    SubjectRecord,
    UnknownFace,
    UnknownSubject,
    check_name,
    check_threshold,
    metadata_json,
    utc_now,
)
from facerec.serve.store.crypto import KEY_ENV, PlainVectors, VectorCipher
from facerec.serve.store.index import GalleryIndex, IndexPolicy
from facerec.serve.store.sql import (
    ENCRYPTION_AES_GCM,
    ENCRYPTION_NONE,
    GALLERY_COLUMNS,
    KEY_CHECK,
    SQLStore,
    gallery_row,
    new_gallery_record,
)

SCHEMA_VERSION = 2  # 2: galleries.keep_crops and .migration, faces.crop
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS galleries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    digest TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    dimension INTEGER NOT NULL CHECK (dimension > 0),
    threshold REAL,
    created TEXT NOT NULL,
    keep_crops INTEGER NOT NULL DEFAULT 0,
    migration TEXT
);
CREATE TABLE IF NOT EXISTS subjects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    gallery_id INTEGER NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (gallery_id, name)
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id INTEGER NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    metadata TEXT NOT NULL,
    created TEXT NOT NULL,
    crop BLOB
);
CREATE INDEX IF NOT EXISTS faces_by_subject ON faces (subject_id);
"""
# What brings a store of the schema before each version up to it (one transaction per step).
UPGRADES = {
    2: [
        "ALTER TABLE galleries ADD COLUMN keep_crops INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE galleries ADD COLUMN migration TEXT",
        "ALTER TABLE faces ADD COLUMN crop BLOB",
    ],
}

log = logging.getLogger(__name__)


class SQLiteStore(SQLStore):
    """Galleries in one SQLite file. `key`: 32 bytes that seal the vectors; without one, a new
    store needs `plaintext=True` (tests and development)."""

    def __init__(
        self,
        path: str | Path,
        key: bytes | None = None,
        plaintext: bool = False,
        create: bool = True,
        policy: IndexPolicy | None = None,
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.policy = policy or IndexPolicy()
        self._lock = threading.RLock()
        self._indexes: dict[int, GalleryIndex] = {}  # by gallery id
        self._conn: sqlite3.Connection | None = self._connect(create)
        try:
            self._cipher = self._set_up(key, plaintext)
        except BaseException:
            self.close()
            raise
        self._data_version = self._pragma("data_version")

    # ---- opening ------------------------------------------------------------------------------
    def _connect(self, create: bool) -> sqlite3.Connection:
        if self.path.suffix == ".npz":
            raise StoreError(
                f"{self.path} is an old .npz gallery, not a store: "
                f"import it with `facerec gallery import {self.path} --into STORE --name NAME`"
            )
        if not create and not self.path.is_file():
            raise StoreError(f"gallery store not found: {self.path} (create it with `facerec enroll`)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open gallery store {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            for pragma in ("synchronous=FULL", "foreign_keys=ON", "secure_delete=ON"):
                conn.execute(f"PRAGMA {pragma}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path} is not a facerec gallery store: {exc}") from exc
        return conn

    def _set_up(self, key: bytes | None, plaintext: bool) -> VectorCipher | PlainVectors:
        """Create the schema of a new store, or check an existing one; the cipher its vectors need."""
        meta = self._read_meta()
        if not meta:
            meta = self._create_schema(key, plaintext)
        version = int(meta.get("schema", "0"))
        if not 1 <= version <= SCHEMA_VERSION:
            raise StoreError(f"{self.path} has store schema {version}; this facerec reads schema {SCHEMA_VERSION}")
        cipher = self._cipher_for(meta, key)  # only whoever holds the key changes the store, even its schema
        if version < SCHEMA_VERSION:
            self._upgrade()
        return cipher

    def _upgrade(self) -> int:
        """Bring an older store up to SCHEMA_VERSION, one transaction per version (inside the
        write lock, so two processes opening it together upgrade it once)."""
        while True:
            with self._write() as db:
                version = int(db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0])
                if version >= SCHEMA_VERSION:
                    return version
                for statement in UPGRADES[version + 1]:
                    db.execute(statement)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(version + 1),))
            log.info("gallery store %s: schema %d upgraded to %d", self.path, version, version + 1)

    def _read_meta(self) -> dict[str, str]:
        db = self._db
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "meta" not in tables:
                if tables:
                    raise StoreError(f"{self.path} is an SQLite database, but not a facerec gallery store")
                return {}
            return dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a facerec gallery store: {exc}") from exc

    def _create_schema(self, key: bytes | None, plaintext: bool) -> dict[str, str]:
        if key is None and not plaintext:
            raise StoreKeyError(
                f"no key for the new gallery store {self.path}: set {KEY_ENV} or give a key file "
                "(`facerec gallery key` makes one), or choose unencrypted vectors explicitly "
                "(plaintext; for tests and development only)"
            )
        cipher = VectorCipher(key) if key is not None else PlainVectors()
        meta = {
            "schema": str(SCHEMA_VERSION),
            "encryption": ENCRYPTION_AES_GCM if cipher.encrypted else ENCRYPTION_NONE,
            "key_check": cipher.seal(KEY_CHECK, b"key check").hex(),
            "created": utc_now(),
        }
        with self._write() as db:
            for statement in SCHEMA.split(";"):  # not executescript: it would commit first
                db.execute(statement)
            db.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", meta.items())
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    # ---- connection and transactions ----------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"gallery store {self.path} is closed")
        return self._conn

    def _pragma(self, name: str) -> Any:
        return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _erased(self) -> None:
        """After a deletion: move the overwritten pages into the main file and empty the log,
        so erased vectors do not linger in the write-ahead log (best effort with readers)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._indexes.clear()

    # ---- galleries ----------------------------------------------------------------------------
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
        record = new_gallery_record(name, model, digest, pipeline, dimension, threshold, keep_crops, migration)
        with self._write() as db:
            if db.execute("SELECT 1 FROM galleries WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"gallery '{name}' already exists in {self.path}")
            db.execute(
                f"INSERT INTO galleries ({GALLERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", gallery_row(record)
            )
        return record

    def delete_gallery(self, name: str) -> None:
        with self._lock:
            with self._write() as db:
                gallery_id, _ = self._gallery_row(name)
                db.execute("DELETE FROM galleries WHERE id = ?", (gallery_id,))
            self._indexes.pop(gallery_id, None)
            self._erased()

    def set_threshold(self, name: str, threshold: float | None) -> GalleryRecord:
        check_threshold(threshold)
        with self._write() as db:
            gallery_id, _ = self._gallery_row(name)
            db.execute("UPDATE galleries SET threshold = ? WHERE id = ?", (threshold, gallery_id))
        return self.gallery(name)

    # ---- subjects -----------------------------------------------------------------------------
    def create_subject(self, gallery: str, name: str, metadata: Metadata | None = None) -> SubjectRecord:
        check_name(name, "subject")
        text = metadata_json(metadata, f"subject '{name}'")
        created = utc_now()
        with self._write() as db:
            gallery_id, _ = self._gallery_row(gallery)
            if self._subject_id(gallery_id, name) is not None:
                raise AlreadyExists(f"subject '{name}' already exists in gallery '{gallery}'")
            db.execute(
                "INSERT INTO subjects (gallery_id, name, metadata, created) VALUES (?, ?, ?, ?)",
                (gallery_id, name, text, created),
            )
        return SubjectRecord(gallery, name, json.loads(text), created)

    def delete_subject(self, gallery: str, name: str) -> int:
        with self._lock:
            with self._write() as db:
                gallery_id, _ = self._gallery_row(gallery)
                subject_id = self._known_subject_id(gallery_id, gallery, name)
                face_ids = [r[0] for r in db.execute("SELECT id FROM faces WHERE subject_id = ?", (subject_id,))]
                db.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))
            self._forget_faces(gallery_id, face_ids)
            self._erased()
        return len(face_ids)

    # ---- faces --------------------------------------------------------------------------------
    def _insert_faces(
        self,
        gallery: GalleryRecord,
        faces: Sequence[NewFace],
        rows: np.ndarray,
        metadata: list[str],
        create_subjects: bool,
        crops: list[bytes | None] | None = None,
    ) -> list[FaceRecord]:
        created = utc_now()
        crops = crops or [None] * len(faces)
        with self._lock:
            with self._write() as db:
                gallery_id, _ = self._gallery_row(gallery.name)
                subjects = self._subject_ids(gallery_id, gallery.name, [f.subject for f in faces], create_subjects)
                ids = self._next_face_ids(len(faces))
                db.executemany(
                    "INSERT INTO faces (id, subject_id, vector, metadata, created, crop) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        (face_id, subjects[face.subject], self._seal(face_id, row), text, created, sealed)
                        for face_id, face, row, text, sealed in zip(
                            ids, faces, rows, metadata, self._seal_crops(ids, crops), strict=True
                        )
                    ),
                )
            if gallery_id in self._indexes:  # committed: now the index may show them
                self._indexes[gallery_id].add(np.array(ids), [f.subject for f in faces], rows)
        return [
            FaceRecord(face_id, gallery.name, face.subject, json.loads(text), created)
            for face_id, face, text in zip(ids, faces, metadata, strict=True)
        ]

    def _next_face_ids(self, count: int) -> list[int]:
        """Ids for new faces, chosen before they are written since each vector is sealed with its
        id; never one a deleted face had (inside the write transaction, nobody else can take them)."""
        first = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM sqlite_sequence WHERE name = 'faces'")
        start = first.fetchone()[0]
        return list(range(start, start + count))

    def _subject_ids(self, gallery_id: int, gallery: str, names: list[str], create: bool) -> dict[str, int]:
        """The row id of each subject named, created (inside the caller's transaction) if asked."""
        found: dict[str, int] = {}
        for name in dict.fromkeys(names):
            subject_id = self._subject_id(gallery_id, name)
            if subject_id is None and not create:
                raise UnknownSubject(f"no subject '{name}' in gallery '{gallery}' (create it first)")
            if subject_id is None:
                subject_id = self._db.execute(
                    "INSERT INTO subjects (gallery_id, name, metadata, created) VALUES (?, ?, '{}', ?)",
                    (gallery_id, name, utc_now()),
                ).lastrowid
            found[name] = subject_id
        return found

    def delete_face(self, gallery: str, face_id: int) -> None:
        with self._lock:
            with self._write() as db:
                gallery_id, _ = self._gallery_row(gallery)
                deleted = db.execute(
                    "DELETE FROM faces WHERE id = ? AND subject_id IN (SELECT id FROM subjects WHERE gallery_id = ?)",
                    (int(face_id), gallery_id),
                ).rowcount
                if not deleted:
                    raise UnknownFace(f"no face {face_id} in gallery '{gallery}'")
            self._forget_faces(gallery_id, [int(face_id)])
            self._erased()

    def _forget_faces(self, gallery_id: int, face_ids: list[int]) -> None:
        if gallery_id in self._indexes:
            self._indexes[gallery_id].remove(face_ids)

    # ---- search -------------------------------------------------------------------------------
    def _search(self, gallery: GalleryRecord, queries: np.ndarray, k: int) -> list[list[Match]]:
        with self._lock:
            gallery_id, record = self._gallery_row(gallery.name)
            return self._index(gallery_id, record).search(queries, k)

    def warm(self) -> None:
        """Build the index of every gallery now (a service does this at start)."""
        with self._lock:
            for record in self.galleries():
                self._index(*self._gallery_row(record.name))

    def _index(self, gallery_id: int, record: GalleryRecord) -> GalleryIndex:
        version = self._pragma("data_version")
        if version != self._data_version:  # another process wrote to the file: rebuild from it
            self._indexes.clear()
            self._data_version = version
        if gallery_id not in self._indexes:
            self._indexes[gallery_id] = self._build_index(gallery_id, record)
        return self._indexes[gallery_id]

    def _build_index(self, gallery_id: int, record: GalleryRecord) -> GalleryIndex:
        rows = self._db.execute(
            "SELECT f.id, s.name, f.vector FROM faces f JOIN subjects s ON s.id = f.subject_id "
            "WHERE s.gallery_id = ? ORDER BY f.id",
            (gallery_id,),
        ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.zeros((len(rows), record.dimension), dtype=np.float32)
        for k, (face_id, _, blob) in enumerate(rows):
            vectors[k] = self._unseal(face_id, blob, record.dimension)
        index = GalleryIndex.build(record.dimension, self.policy, ids, [r[1] for r in rows], vectors)
        kind = self.policy.approximate if index.approximate else "exact"
        log.info("gallery '%s': %d faces in memory (%s search)", record.name, len(rows), kind)
        return index

    # ---- upkeep -------------------------------------------------------------------------------
    def check_integrity(self) -> list[str]:
        with self._lock:
            problems = [r[0] for r in self._db.execute("PRAGMA integrity_check") if r[0] != "ok"]
            problems += [f"foreign key: {r}" for r in self._db.execute("PRAGMA foreign_key_check")]
        return problems
