"""The audit log: who enrolled, deleted or searched what, when, as append-only JSON lines.

A line names the key (its id, never its secret), the action, the gallery and the subject and face
ids it touched; never an image or a vector. Each line is one `write` on a file opened with
O_APPEND, so concurrent writers (threads or processes) never interleave inside a line, and it is
fsynced before the request is answered: an acknowledged action is on disk.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.log"


class AuditLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one fsync at a time: appends stay in the order they were made

    def record(self, who: str, action: str, gallery: str | None = None, **details: Any) -> None:
        """Append one line: `details` hold ids (subject names, face ids, counts), nothing else."""
        entry = {"when": _now(), "who": who, "action": action, "gallery": gallery, **details}
        line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                _write_all(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        """Every line, oldest first (for tests and operators' scripts)."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def _write_all(fd: int, data: bytes) -> None:
    # A regular file takes the whole line in one write; the loop only guards a short write.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
