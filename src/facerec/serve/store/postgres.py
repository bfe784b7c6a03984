"""The server gallery store: PostgreSQL, shared by several service replicas.

Vectors and search. Vectors are kept sealed (AES-256-GCM, crypto.py) in a `bytea` column, as in
the SQLite store, and each replica searches them with the same in-memory index (index.py). The
alternative, plaintext `vector` columns searched by pgvector inside the database, was not chosen:
it would put every face's embedding in clear in the tables, the write-ahead log, its archives,
replicas and backups, protected only by disk or database-level encryption that the database's
operators hold, while here the key never reaches the database server. The price: every replica
holds the galleries it searches in memory (as a single SQLite service does) and rebuilds one when
another replica changed it. Each gallery has a version counter, raised in the transaction of every
write to its faces; a search compares it with the version of its index and rebuilds on a
difference, so a face enrolled or erased through one replica is seen by the others at their next
search. Galleries too large for one machine's memory would need pgvector and plaintext vectors.

Several replicas each open their own PostgresStore on one database (a `postgresql://` URL; a
database or schema of its own, since the tables are named `galleries`, `subjects`, `faces`). One
store object holds one connection, used by one thread at a time, and connects again after the
server restarted (the call that found the connection broken raises).

Durability: one transaction per operation (committed when the method returns, rolled back when it
raises). Erasure: a deleted face leaves every search at once and its row at the commit; PostgreSQL
keeps the dead row's bytes until VACUUM reuses the page, and in its write-ahead log, archives and
backups until they are recycled: only a keyed store makes those copies unreadable.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
    UnknownGallery,
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
from facerec.serve.store.sqlite import SCHEMA_VERSION

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS facerec_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS galleries (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        model TEXT NOT NULL,
        digest TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        dimension INTEGER NOT NULL CHECK (dimension > 0),
        threshold DOUBLE PRECISION,
        created TEXT NOT NULL,
        version BIGINT NOT NULL DEFAULT 0,
        keep_crops BOOLEAN NOT NULL DEFAULT FALSE,
        migration TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS subjects (
        id BIGSERIAL PRIMARY KEY,
        gallery_id BIGINT NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        metadata TEXT NOT NULL,
        created TEXT NOT NULL,
        UNIQUE (gallery_id, name)
    )""",
    """CREATE TABLE IF NOT EXISTS faces (
        id BIGSERIAL PRIMARY KEY,
        subject_id BIGINT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
        vector BYTEA NOT NULL,
        metadata TEXT NOT NULL,
        created TEXT NOT NULL,
        crop BYTEA
    )""",
    "CREATE INDEX IF NOT EXISTS faces_by_subject ON faces (subject_id)",
]
# What brings a store of the schema before each version up to it (one transaction per step).
UPGRADES = {
    2: [
        "ALTER TABLE galleries ADD COLUMN IF NOT EXISTS keep_crops BOOLEAN NOT NULL DEFAULT FALSE",
        "ALTER TABLE galleries ADD COLUMN IF NOT EXISTS migration TEXT",
        "ALTER TABLE faces ADD COLUMN IF NOT EXISTS crop BYTEA",
    ],
}
SCHEMA_LOCK = 0x66616365  # advisory lock: two replicas starting together create the schema once

log = logging.getLogger(__name__)


def redacted(url: str) -> str:
    """The connection URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@]+@", r"\1:***@", url)


class PostgresStore(SQLStore):
    """Galleries in a PostgreSQL database (`url`: postgresql://user:password@host/db). `key` seals
    the vectors; without one, a new store needs `plaintext=True` (tests and development)."""

    marker = "%s"
    row_lock = " FOR UPDATE"  # writers of one gallery queue on its row

    def __init__(
        self,
        url: str,
        key: bytes | None = None,
        plaintext: bool = False,
        create: bool = True,
        policy: IndexPolicy | None = None,
    ) -> None:
        self.url = url
        self.location = redacted(url)
        self.policy = policy or IndexPolicy()
        self._lock = threading.RLock()
        self._indexes: dict[int, tuple[int, GalleryIndex]] = {}  # gallery id: (version, index)
        self._closed = False
        self._conn: Any = self._connect()
        try:
            self._cipher = self._set_up(key, plaintext, create)
        except BaseException:
            self.close()
            raise

    # ---- opening ------------------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise StoreError("the PostgreSQL gallery store needs psycopg: pip install 'facerec[postgres]'") from None
        try:
            # autocommit: single reads commit at once (no session idles inside a transaction);
            # every write opens its own transaction explicitly
            return psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open gallery store {self.location}: {exc}") from exc

    def _set_up(self, key: bytes | None, plaintext: bool, create: bool) -> VectorCipher | PlainVectors:
        meta = self._read_meta()
        if not meta:
            if not create:
                raise StoreError(f"gallery store not found: {self.location} has no facerec tables")
            meta = self._create_schema(key, plaintext)
        version = int(meta.get("schema", "0"))
        if not 1 <= version <= SCHEMA_VERSION:
            raise StoreError(f"{self.location} has store schema {version}; this facerec reads schema {SCHEMA_VERSION}")
        cipher = self._cipher_for(meta, key)  # only whoever holds the key changes the store, even its schema
        if version < SCHEMA_VERSION:
            self._upgrade()
        return cipher

    def _upgrade(self) -> int:
        """Bring an older store up to SCHEMA_VERSION, one transaction per version, under the
        schema lock (replicas starting together upgrade it once)."""
        while True:
            with self._write() as db:
                db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                version = int(db.execute("SELECT value FROM facerec_meta WHERE key = 'schema'").fetchone()[0])
                if version >= SCHEMA_VERSION:
                    return version
                for statement in UPGRADES[version + 1]:
                    db.execute(statement)
                db.execute("UPDATE facerec_meta SET value = %s WHERE key = 'schema'", (str(version + 1),))
            log.info("gallery store %s: schema %d upgraded to %d", self.location, version, version + 1)

    def _read_meta(self) -> dict[str, str]:
        with self._lock:
            if not self._table_exists("facerec_meta"):
                return {}
            return dict(self._db.execute("SELECT key, value FROM facerec_meta").fetchall())

    def _create_schema(self, key: bytes | None, plaintext: bool) -> dict[str, str]:
        if key is None and not plaintext:
            raise StoreKeyError(
                f"no key for the new gallery store {self.location}: set {KEY_ENV} or give a key file "
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
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            self._refuse_foreign_tables()
            for statement in SCHEMA:
                db.execute(statement)
            for item in meta.items():  # the first replica's meta wins; later ones read it
                db.execute("INSERT INTO facerec_meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING", item)
        return self._read_meta()

    def _refuse_foreign_tables(self) -> None:
        """Tables of ours in name only (another application's, in a shared database) would be
        written to or misread: such a database needs its own schema for the store."""
        if self._table_exists("facerec_meta"):
            return  # another replica created the store while this one waited for the lock
        taken = [t for t in ("galleries", "subjects", "faces") if self._table_exists(t)]
        if taken:
            raise StoreError(
                f"{self.location} already has tables {', '.join(taken)} that are not a facerec store: "
                "give the store a database of its own, or a schema (?options=-csearch_path%3Dfacerec)"
            )

    def _table_exists(self, name: str) -> bool:
        return self._db.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None

    # ---- connection and transactions ----------------------------------------------------------
    @property
    def _db(self) -> Any:
        if self._closed:
            raise StoreError(f"gallery store {self.location} is closed")
        if self._conn is None or self._conn.broken:  # the server restarted or failed over
            self._reconnect()
        return self._conn

    def _reconnect(self) -> None:
        """A new connection; the call that found the old one broken has raised already."""
        log.warning("gallery store %s: connection lost, connecting again", self.location)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._indexes.clear()  # the database may be another one now (a restored backup)
        self._conn = self._connect()  # raises StoreError while the server is still away

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._lock, self._db.transaction():
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._indexes.clear()

    def _bump(self, gallery_id: int) -> int:
        """Raise the gallery's version inside the caller's write; the row lock it takes orders the
        writers of one gallery, so a version one above the index's means only this write came."""
        return self._db.execute(
            "UPDATE galleries SET version = version + 1 WHERE id = %s RETURNING version", (gallery_id,)
        ).fetchone()[0]

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
        row = gallery_row(record)
        row = (*row[:7], bool(row[7]), row[8])  # keep_crops is a boolean column here
        with self._write() as db:
            inserted = db.execute(
                f"INSERT INTO galleries ({GALLERY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
                row,
            ).fetchone()
            if inserted is None:
                raise AlreadyExists(f"gallery '{name}' already exists in {self.location}")
        return record

    def delete_gallery(self, name: str) -> None:
        with self._lock:
            with self._write() as db:
                gallery_id, _ = self._gallery_row(name, lock=True)
                db.execute("DELETE FROM galleries WHERE id = %s", (gallery_id,))
            self._indexes.pop(gallery_id, None)

    def set_threshold(self, name: str, threshold: float | None) -> GalleryRecord:
        check_threshold(threshold)
        with self._write() as db:
            gallery_id, _ = self._gallery_row(name, lock=True)
            db.execute("UPDATE galleries SET threshold = %s WHERE id = %s", (threshold, gallery_id))
        return self.gallery(name)

    # ---- subjects -----------------------------------------------------------------------------
    def create_subject(self, gallery: str, name: str, metadata: Metadata | None = None) -> SubjectRecord:
        check_name(name, "subject")
        text = metadata_json(metadata, f"subject '{name}'")
        created = utc_now()
        with self._write() as db:
            gallery_id, _ = self._gallery_row(gallery, lock=True)
            inserted = db.execute(
                "INSERT INTO subjects (gallery_id, name, metadata, created) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (gallery_id, name) DO NOTHING RETURNING id",
                (gallery_id, name, text, created),
            ).fetchone()
            if inserted is None:
                raise AlreadyExists(f"subject '{name}' already exists in gallery '{gallery}'")
        return SubjectRecord(gallery, name, json.loads(text), created)

    def delete_subject(self, gallery: str, name: str) -> int:
        with self._lock:
            with self._write() as db:
                gallery_id, _ = self._gallery_row(gallery, lock=True)
                subject_id = self._known_subject_id(gallery_id, gallery, name)
                face_ids = [r[0] for r in db.execute("SELECT id FROM faces WHERE subject_id = %s", (subject_id,))]
                db.execute("DELETE FROM subjects WHERE id = %s", (subject_id,))
                version = self._bump(gallery_id)
            self._forget_faces(gallery_id, face_ids, version)
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
                gallery_id, _ = self._gallery_row(gallery.name, lock=True)
                subjects = self._subject_ids(gallery_id, gallery.name, [f.subject for f in faces], create_subjects)
                ids = self._next_face_ids(len(faces))
                with db.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO faces (id, subject_id, vector, metadata, created, crop) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        [
                            (face_id, subjects[face.subject], self._seal(face_id, row), text, created, sealed)
                            for face_id, face, row, text, sealed in zip(
                                ids, faces, rows, metadata, self._seal_crops(ids, crops), strict=True
                            )
                        ],
                    )
                version = self._bump(gallery_id)
            self._index_added(gallery_id, version, np.array(ids), [f.subject for f in faces], rows)
        return [
            FaceRecord(face_id, gallery.name, face.subject, json.loads(text), created)
            for face_id, face, text in zip(ids, faces, metadata, strict=True)
        ]

    def _next_face_ids(self, count: int) -> list[int]:
        """Ids for new faces, taken before they are written since each vector is sealed with its
        id; a sequence never hands out one id twice, even to concurrent replicas."""
        rows = self._db.execute(
            "SELECT nextval(pg_get_serial_sequence('faces', 'id')) FROM generate_series(1, %s)", (count,)
        ).fetchall()
        return [r[0] for r in rows]

    def _subject_ids(self, gallery_id: int, gallery: str, names: list[str], create: bool) -> dict[str, int]:
        """The row id of each subject named, created (inside the caller's transaction) if asked."""
        found: dict[str, int] = {}
        for name in dict.fromkeys(names):
            subject_id = self._subject_id(gallery_id, name)
            if subject_id is None and not create:
                raise UnknownSubject(f"no subject '{name}' in gallery '{gallery}' (create it first)")
            if subject_id is None:
                subject_id = self._db.execute(
                    "INSERT INTO subjects (gallery_id, name, metadata, created) VALUES (%s, %s, '{}', %s) RETURNING id",
                    (gallery_id, name, utc_now()),
                ).fetchone()[0]
            found[name] = subject_id
        return found

    def delete_face(self, gallery: str, face_id: int) -> None:
        with self._lock:
            with self._write() as db:
                gallery_id, _ = self._gallery_row(gallery, lock=True)
                deleted = db.execute(
                    "DELETE FROM faces WHERE id = %s AND subject_id IN (SELECT id FROM subjects WHERE gallery_id = %s)",
                    (int(face_id), gallery_id),
                ).rowcount
                if not deleted:
                    raise UnknownFace(f"no face {face_id} in gallery '{gallery}'")
                version = self._bump(gallery_id)
            self._forget_faces(gallery_id, [int(face_id)], version)

    # ---- the in-memory index, kept in step with the database ----------------------------------
    def _current_index(self, gallery_id: int, version: int) -> GalleryIndex | None:
        """The index of the gallery as it was just before the write that made `version`, or None
        (not built yet, or another replica wrote in between: the next search rebuilds it)."""
        cached = self._indexes.get(gallery_id)
        if cached is None or cached[0] != version - 1:
            self._indexes.pop(gallery_id, None)
            return None
        return cached[1]

    def _index_added(self, gallery_id: int, version: int, ids: np.ndarray, subjects: list[str], rows: np.ndarray):
        index = self._current_index(gallery_id, version)
        if index is not None:  # committed: now the index may show them
            index.add(ids, subjects, rows)
            self._indexes[gallery_id] = (version, index)

    def _forget_faces(self, gallery_id: int, face_ids: list[int], version: int) -> None:
        index = self._current_index(gallery_id, version)
        if index is not None:
            index.remove(face_ids)
            self._indexes[gallery_id] = (version, index)

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
        version = self._db.execute("SELECT version FROM galleries WHERE id = %s", (gallery_id,)).fetchone()
        cached = self._indexes.get(gallery_id)
        if cached is not None and version is not None and cached[0] == version[0]:
            return cached[1]
        built_version, index = self._build_index(gallery_id, record)
        self._indexes[gallery_id] = (built_version, index)
        return index

    def _build_index(self, gallery_id: int, record: GalleryRecord) -> tuple[int, GalleryIndex]:
        """The gallery's faces and the version they are at, read from one snapshot."""
        with self._db.transaction():
            self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            found = self._db.execute("SELECT version FROM galleries WHERE id = %s", (gallery_id,)).fetchone()
            rows = self._db.execute(
                "SELECT f.id, s.name, f.vector FROM faces f JOIN subjects s ON s.id = f.subject_id "
                "WHERE s.gallery_id = %s ORDER BY f.id",
                (gallery_id,),
            ).fetchall()
        if found is None:  # erased by another replica since
            raise UnknownGallery(f"gallery '{record.name}' was deleted from {self.location}")
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.zeros((len(rows), record.dimension), dtype=np.float32)
        for k, (face_id, _, blob) in enumerate(rows):
            vectors[k] = self._unseal(face_id, blob, record.dimension)
        index = GalleryIndex.build(record.dimension, self.policy, ids, [r[1] for r in rows], vectors)
        kind = self.policy.approximate if index.approximate else "exact"
        log.info("gallery '%s': %d faces in memory (%s search)", record.name, len(rows), kind)
        return found[0], index

    # ---- upkeep -------------------------------------------------------------------------------
    def check_integrity(self) -> list[str]:
        """Foreign keys and checks are enforced by the server; what is left to look at: faces
        whose vector does not open or has the wrong size."""
        problems = []
        with self._lock:
            rows = self._db.execute(
                "SELECT f.id, f.vector, g.dimension FROM faces f JOIN subjects s ON s.id = f.subject_id "
                "JOIN galleries g ON g.id = s.gallery_id"
            ).fetchall()
        for face_id, blob, dimension in rows:
            try:
                self._unseal(face_id, blob, dimension)
            except StoreError as exc:
                problems.append(str(exc))
        return problems
