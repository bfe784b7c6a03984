"""Vectors at rest: AES-256-GCM with a key from a file or the FACEREC_STORE_KEY variable.

Each vector is sealed with its own random 96-bit nonce and bound to its face id (associated
data), so a sealed vector copied onto another row does not open. A key is 32 bytes, written as
64 hexadecimal characters or as base64.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import stat
from pathlib import Path

from facerec.serve.store.base import StoreKeyError

KEY_ENV = "FACEREC_STORE_KEY"
KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT_AES_GCM = b"\x01"  # first byte of a sealed vector: room for another scheme later

log = logging.getLogger(__name__)


def new_key_text() -> str:
    """A fresh random key, as 64 hexadecimal characters."""
    return secrets.token_hex(KEY_BYTES)


def write_key_file(path: str | Path) -> Path:
    """A new key in a new file that only its owner can read; an existing file is never replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise StoreKeyError(f"{path} exists: a key file is never overwritten (its store would be lost)") from None
    with os.fdopen(fd, "w") as out:
        out.write(new_key_text() + "\n")
    return path


def parse_key(text: str, source: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 2 * KEY_BYTES else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != KEY_BYTES:
        raise StoreKeyError(
            f"{source} does not hold a 256-bit key (64 hexadecimal characters, or base64 of 32 bytes): "
            "make one with `facerec gallery key`"
        )
    return key


def read_key_file(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise StoreKeyError(f"key file not found: {path}")
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s can be read by other users: chmod 600 it", path)
    return parse_key(path.read_text(), f"key file {path}")


def find_key(key_file: str | Path | None = None) -> bytes | None:
    """The key from `key_file`, else from FACEREC_STORE_KEY, else None."""
    if key_file is not None:
        return read_key_file(key_file)
    text = os.environ.get(KEY_ENV)
    return parse_key(text, f"${KEY_ENV}") if text else None


class VectorCipher:
    """Seals and opens vector bytes; `aad` names the row the vector belongs to."""

    encrypted = True

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    def seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return FORMAT_AES_GCM + nonce + self._aead.encrypt(nonce, data, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plain bytes; StoreKeyError when the key is not the one that sealed them (or the
        bytes were altered)."""
        from cryptography.exceptions import InvalidTag

        if blob[:1] != FORMAT_AES_GCM:
            raise StoreKeyError(f"{aad.decode()}: not an AES-GCM sealed vector")
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise StoreKeyError(f"{aad.decode()} does not open with this key (wrong key, or altered data)") from None


class PlainVectors:
    """No encryption: for tests and development, chosen explicitly."""

    encrypted = False

    def seal(self, data: bytes, aad: bytes) -> bytes:
        return data

    def open(self, blob: bytes, aad: bytes) -> bytes:
        return blob
