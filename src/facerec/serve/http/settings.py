"""How the service is run: address, data directory, model, and the limits on what it accepts."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from facerec.errors import FacerecError
from facerec.serve.keys import DEFAULT_DATA_DIR
from facerec.serve.store import KEY_ENV

STORE_FILE = "gallery.db"


@dataclass(frozen=True)
class ServiceSettings:
    host: str = "127.0.0.1"  # loopback: reachable from this machine only
    port: int = 8000
    data_dir: Path = DEFAULT_DATA_DIR  # keys.db (and the gallery store) live here
    model: str = "default"
    detector: str = "mtcnn"
    device: str = "auto"
    runtime: str | None = "auto"  # torch, onnx or auto (the faster per batch size); None: the model's own
    insecure_no_auth: bool = False
    max_request_bytes: int = 20 * 2**20
    max_images: int = 16  # images in one request
    max_pixels: int = 40_000_000  # per image: larger ones are refused before they are decoded
    batch_wait_ms: float = 5.0  # how long a crop waits for others to share its model call
    max_batch: int = 32  # crops in one model call
    detect_threads: int = 2  # images decoded and searched for faces at once
    debug_timing: bool = False  # time each request's stages: Server-Timing header and a log line
    store: str | None = None  # a store file or a postgresql:// URL (kept a string); None: <data_dir>/gallery.db
    store_key_file: Path | None = None  # None: $FACEREC_STORE_KEY
    store_plaintext: bool = False  # vectors unencrypted at rest: only when asked for explicitly
    quality: str = "stability"  # face quality scorer (facerec.eval.quality.QUALITY)

    @property
    def store_location(self) -> str | Path:
        return self.store if self.store is not None else self.data_dir / STORE_FILE

    def store_configured(self) -> bool:
        """Whether the service opens a gallery store: a key, plaintext asked for, or a store file
        already there. Without any, it serves detect/embed/verify alone (galleries answer 503)."""
        explicit = self.store_key_file is not None or self.store_plaintext or bool(os.environ.get(KEY_ENV))
        return explicit or self.store is not None or (self.data_dir / STORE_FILE).exists()

    def check(self) -> None:
        """Refuse settings that would expose the service or make it unusable."""
        if self.insecure_no_auth and not is_loopback(self.host):
            raise FacerecError(
                f"--insecure-no-auth serves every request without a key: allowed on a loopback address "
                f"only (127.0.0.1, ::1, localhost), not on '{self.host}'. Create a key with `facerec keys create`."
            )
        limits = {
            "max request size": self.max_request_bytes,
            "max images": self.max_images,
            "max pixels": self.max_pixels,
            "max batch": self.max_batch,
            "detect threads": self.detect_threads,
        }
        bad = [name for name, value in limits.items() if value < 1]
        if bad or self.batch_wait_ms < 0:
            raise FacerecError(f"service limits must be positive: {', '.join(bad) or 'batch wait'}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
