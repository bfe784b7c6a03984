"""Gallery stores: galleries, subjects and faces behind one interface (`GalleryStore`).

Backends: `sqlite` (embedded: one file, vectors encrypted at rest, index in memory) and
`postgres` (a PostgreSQL database shared by several replicas: the same sealed vectors and
in-memory index; postgres.py says why). `open_store` picks the backend from the location (a
`postgresql://` URL or a file path) and the key from a key file or FACEREC_STORE_KEY.
"""

from __future__ import annotations

from pathlib import Path

from facerec.serve.store.base import (
    AlreadyExists,
    FaceRecord,
    GalleryCounts,
    GalleryRecord,
    GalleryStore,
    Match,
    ModelMismatch,
    NewFace,
    StoreError,
    StoreKeyError,
    SubjectRecord,
    UnknownFace,
    UnknownGallery,
    UnknownSubject,
)
from facerec.serve.store.crypto import KEY_ENV, find_key, new_key_text
from facerec.serve.store.index import IndexPolicy
from facerec.serve.store.sqlite import SQLiteStore

DEFAULT_STORE = Path("facerec-data") / "gallery.db"


def open_store(
    location: str | Path = DEFAULT_STORE,
    key_file: str | Path | None = None,
    plaintext: bool = False,
    create: bool = True,
    policy: IndexPolicy | None = None,
) -> GalleryStore:
    """The store at `location` (a postgresql:// URL: the server store; a file path: the embedded
    SQLite store), keyed by `key_file`, else by $FACEREC_STORE_KEY; `plaintext` allows a new
    store without a key (tests, development)."""
    if plaintext and key_file is not None:
        raise StoreKeyError("a key file and plaintext vectors exclude each other: choose one")
    key = None if plaintext else find_key(key_file)
    if is_database_url(location):
        from facerec.serve.store.postgres import PostgresStore  # psycopg only where it is used

        return PostgresStore(str(location), key, plaintext=plaintext, create=create, policy=policy)
    return SQLiteStore(location, key, plaintext=plaintext, create=create, policy=policy)


def is_database_url(location: str | Path) -> bool:
    return str(location).startswith(("postgres://", "postgresql://"))


__all__ = [
    "DEFAULT_STORE",
    "KEY_ENV",
    "AlreadyExists",
    "FaceRecord",
    "GalleryCounts",
    "GalleryRecord",
    "GalleryStore",
    "IndexPolicy",
    "Match",
    "ModelMismatch",
    "NewFace",
    "SQLiteStore",
    "StoreError",
    "StoreKeyError",
    "SubjectRecord",
    "UnknownFace",
    "UnknownGallery",
    "UnknownSubject",
    "new_key_text",
    "open_store",
]
