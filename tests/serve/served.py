"""A `facerec serve` process on loopback for the service tests, and the client-side helpers
they share (a module of its own: test modules never import each other)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LFW

httpx = pytest.importorskip("httpx")

READY_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `facerec serve` process on loopback, its data directory and its log."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        command = [sys.executable, "-m", "facerec.cli", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(data_dir), "--device", "cpu", *options]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v1/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        pytest.fail(f"the server was not ready within {READY_TIMEOUT_S} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_server(data_dir: Path, *options: str) -> Server:
    server = Server(data_dir, *options)
    server.wait_ready()
    return server


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def files(*images: bytes) -> list[tuple[str, tuple[str, bytes]]]:
    return [("images", (f"image{i}.jpg", data)) for i, data in enumerate(images)]


def lfw(name: str, number: int) -> Path:
    return LFW / "images" / name / f"{name}_{number:04d}.jpg"


def assert_error(response, status: int, code: str) -> dict:
    """A clear JSON error: the status, the code, a message, and no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert "Traceback" not in response.text
    return error
