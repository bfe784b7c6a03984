"""API keys of the face service: scopes, gallery grants, revocation, in one small SQLite file.

A key is shown once, when it is created: `fr_<id>_<secret>`. The file keeps the id, the scopes,
the gallery grants and a salted PBKDF2 hash of the secret, never the secret itself. The secret
is 256 random bits, so the hash needs no heavy stretching to resist guessing; the iteration
count is stored per key so that it can be raised later without invalidating old keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from facerec.errors import FacerecError

KEYS_FILE = "keys.db"
DEFAULT_DATA_DIR = Path("facerec-data")
TOKEN_PREFIX = "fr"
ITERATIONS = 20_000  # about 5 ms a check: the secret is random, not a password

ADMIN = "admin"
EMBEDDINGS_READ = "embeddings:read"
SCOPES = ("detect", "embed", EMBEDDINGS_READ, "search", "enroll", "delete", ADMIN)
GALLERY_SCOPES = frozenset({"search", "enroll", "delete"})  # these act on a named gallery

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,       -- JSON list
    galleries TEXT,             -- JSON list; NULL: every gallery
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    iterations INTEGER NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT                -- UTC time of revocation; NULL: active
);
"""


class KeyStoreError(FacerecError):
    """A key operation the caller can fix (unknown scope, unknown key id, ...)."""


class InvalidKey(FacerecError):
    """A presented key is malformed, unknown or revoked (HTTP 401)."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: frozenset[str]
    galleries: tuple[str, ...] | None  # None: every gallery
    created: str
    revoked: str | None = None

    def allows(self, scope: str) -> bool:
        """admin holds every scope but embeddings:read, which returns vectors and must be explicit."""
        return scope in self.scopes or (ADMIN in self.scopes and scope != EMBEDDINGS_READ)

    def allows_gallery(self, gallery: str) -> bool:
        return ADMIN in self.scopes or self.galleries is None or gallery in self.galleries

    def describe(self) -> dict[str, object]:
        """What `facerec keys list` shows: everything but the secret (which is not stored)."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "galleries": "*" if self.galleries is None else list(self.galleries),
            "created": self.created,
            "revoked": self.revoked,
        }


# A key with every scope, for a server started with --insecure-no-auth on loopback.
UNRESTRICTED = ApiKey("no-auth", "insecure-no-auth", frozenset(SCOPES), None, "")


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """'detect,embed' (or a list) -> the scopes, each checked against SCOPES."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = frozenset(s.strip() for s in items if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise KeyStoreError(f"unknown scope(s) {', '.join(unknown)} (choose from {', '.join(SCOPES)})")
    if not scopes:
        raise KeyStoreError(f"a key needs at least one scope ({', '.join(SCOPES)})")
    return scopes


def gallery_grants(scopes: frozenset[str], galleries: list[str], all_galleries: bool) -> tuple[str, ...] | None:
    """The galleries a new key may use: the named ones, or None (all) when asked explicitly.
    A key that acts on galleries must say which, so that 'every gallery' is never an accident."""
    if galleries and all_galleries:
        raise KeyStoreError("name galleries or grant all galleries, not both")
    if all_galleries:
        return None
    needs_grant = scopes & GALLERY_SCOPES
    if needs_grant and not galleries:
        raise KeyStoreError(
            f"scope(s) {', '.join(sorted(needs_grant))} act on galleries: name them (--gallery G) "
            "or grant all (--all-galleries)"
        )
    return tuple(dict.fromkeys(galleries))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _digest(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)


def split_token(token: str) -> tuple[str, str]:
    """'fr_<id>_<secret>' -> (id, secret); InvalidKey when it has another shape."""
    prefix, _, rest = token.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not key_id or not secret:
        raise InvalidKey("malformed API key")
    return key_id, secret


class KeyStore:
    """The API keys of one data directory (`<data_dir>/keys.db`, readable by its owner only).

    Every call opens its own connection, so one store serves several threads, and a key revoked
    by `facerec keys revoke` in another process is refused on the server's next request.

    A secret that passed the PBKDF2 check is remembered as a fast keyed hash (never the secret),
    so a client's later requests skip the ~5 ms of stretching; its row is still read on every
    request (revocation, scopes), and any other secret still goes through PBKDF2."""

    def __init__(self, data_dir: str | Path = DEFAULT_DATA_DIR, create: bool = True) -> None:
        self.path = Path(data_dir) / KEYS_FILE
        if not self.path.is_file():
            if not create:
                raise KeyStoreError(f"no API keys at {self.path}: create one with `facerec keys create`")
            _create_private_file(self.path)
        with self._connect() as db:
            db.executescript(_SCHEMA)
        self._verified: dict[str, bytes] = {}  # key id -> HMAC of its secret under its stored hash

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10)) as db, db:
            yield db

    def create(
        self, scopes: frozenset[str], galleries: tuple[str, ...] | None = (), name: str = ""
    ) -> tuple[ApiKey, str]:
        """A new key and its token; the token is not kept anywhere and cannot be shown again."""
        key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_bytes(16)
        key = ApiKey(key_id, name, frozenset(parse_scopes(scopes)), galleries, _now())
        row = (
            key.id,
            key.name,
            json.dumps(sorted(key.scopes)),
            None if galleries is None else json.dumps(list(galleries)),
            salt,
            _digest(secret, salt, ITERATIONS),
            ITERATIONS,
            key.created,
        )
        with self._connect() as db:
            db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)", row)
        return key, f"{TOKEN_PREFIX}_{key_id}_{secret}"

    def authenticate(self, token: str) -> ApiKey:
        """The active key behind `token`; InvalidKey when it is malformed, unknown or revoked."""
        key_id, secret = split_token(token)
        with self._connect() as db:
            row = db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            _digest(secret, b"0" * 16, ITERATIONS)  # answer as slowly as for a known id
            raise InvalidKey("unknown API key")
        if not self._secret_matches(key_id, secret, row):
            raise InvalidKey("unknown API key")
        key = _key_from_row(row)
        if key.revoked:
            raise InvalidKey("this API key was revoked")
        return key

    def _secret_matches(self, key_id: str, secret: str, row: tuple) -> bool:
        salt, stored, iterations = row[4], row[5], row[6]
        # keyed by the stored hash: a key re-created under the same id is checked afresh
        quick = hmac.new(stored, secret.encode(), hashlib.sha256).digest()
        known = self._verified.get(key_id)
        if known is not None and hmac.compare_digest(known, quick):
            return True
        if not hmac.compare_digest(_digest(secret, salt, iterations), stored):
            return False
        self._verified[key_id] = quick
        return True

    def revoke(self, key_id: str) -> ApiKey:
        with self._connect() as db:
            done = db.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (_now(), key_id))
        key = self.get(key_id)
        if not done.rowcount:
            raise KeyStoreError(f"API key {key_id} was already revoked ({key.revoked})")
        return key

    def get(self, key_id: str) -> ApiKey:
        with self._connect() as db:
            row = db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise KeyStoreError(f"no API key with id {key_id} in {self.path} (`facerec keys list` shows them)")
        return _key_from_row(row)

    def list(self) -> list[ApiKey]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM keys ORDER BY created, id").fetchall()
        return [_key_from_row(row) for row in rows]

    def active_count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM keys WHERE revoked IS NULL").fetchone()[0])


def _key_from_row(row: tuple) -> ApiKey:
    key_id, name, scopes, galleries, *_, created, revoked = row
    grants = None if galleries is None else tuple(json.loads(galleries))
    return ApiKey(key_id, name, frozenset(json.loads(scopes)), grants, created, revoked)


def _create_private_file(path: Path) -> None:
    """The keys file, and its folder, readable by their owner only (umask aside)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
