"""Crash safety of the gallery store: `kill -9` of a process in the middle of concurrent enrolments.

Each trial starts a writer process on a fresh encrypted store: several threads enroll subjects,
each enrolment `add_faces` of FACES vectors at once, and print `ok <subject>` only after the
call returned (the answer a client would get). After a random time the writer is killed with
SIGKILL. The store is then reopened and checked (crash_check.py, shared with service_crash.py):

- every answered enrolment is there, with all its faces (lost = 0);
- no subject holds a partial set of faces (half written = 0);
- the in-memory index rebuilt from the database finds every stored face's own subject first;
- every stored vector is the one the writer sent;
- SQLite's integrity check passes.

    python benchmarks/store_crash.py --trials 20 --threads 4 --json runs/store_crash.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from crash_check import tally  # beside this script

DIM = 64

WRITER = r"""
import sys, threading, zlib
import numpy as np
from facerec.serve.store import NewFace, open_store

path, threads, faces, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = open_store(path)
store.create_gallery("g", "crash-test", "0" * 64, {}, dim)
print("ready", flush=True)
lock = threading.Lock()

def vectors(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    v = rng.normal(size=(faces, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)

def enroll(worker):
    for n in range(10**9):
        name = f"w{worker}-{n}"
        store.add_faces("g", [NewFace(name, v, {"n": k}) for k, v in enumerate(vectors(name))])
        with lock:
            print("ok", name, flush=True)

for t in range(threads):
    threading.Thread(target=enroll, args=(t,), daemon=True).start()
threading.Event().wait()
"""


def subject_vectors(name: str, faces: int) -> np.ndarray:
    """The writer's vectors of a subject (seeded by the name, as the writer does)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    v = rng.normal(size=(faces, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def run_writer(path: Path, threads: int, faces: int, seconds: float, env: dict[str, str]) -> list[str]:
    """Start the writer, let it enroll for `seconds` after it is ready, kill -9 it; the answered subjects."""
    cmd = [sys.executable, "-c", WRITER, str(path), str(threads), str(faces), str(DIM)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise SystemExit(f"the writer did not start (exit code {proc.wait()})")
    os.set_blocking(proc.stdout.fileno(), False)
    answered: list[str] = []
    deadline = time.monotonic() + seconds
    buffer = b""
    while time.monotonic() < deadline:
        buffer += proc.stdout.read() or b""  # non-blocking: None when nothing is waiting
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    buffer += proc.stdout.read() or b""  # lines written before the kill
    for line in buffer.decode().splitlines():
        if line.startswith("ok ") and line.count(" ") == 1:
            answered.append(line.split()[1])
    return answered


def check(path: Path, answered: list[str], faces: int) -> dict[str, int | bool]:
    """Reopen the store after the kill and compare it with the answered enrolments."""
    from facerec.serve.store import open_store

    def expected(subject: str) -> list[dict[str, int]]:
        return [{"n": k} for k in range(faces)]  # every writer enrolment: faces n = 0 .. faces-1

    def reference(subject: str, metadata: dict[str, int]) -> np.ndarray:
        return subject_vectors(subject, faces)[metadata["n"]]

    with open_store(path) as store:
        result = tally(store, "g", expected, dict.fromkeys(answered), reference)
    return result.counts()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--threads", type=int, default=4, help="concurrent enrolling threads in the writer")
    p.add_argument("--faces", type=int, default=3, help="faces per enrolment (one transaction)")
    p.add_argument("--min-seconds", type=float, default=0.3)
    p.add_argument("--max-seconds", type=float, default=1.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the per-trial results here")
    args = p.parse_args()
    rng = random.Random(args.seed)
    os.environ["FACEREC_STORE_KEY"] = os.urandom(32).hex()  # the writer and the check share the key
    env = dict(os.environ)
    trials = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in range(args.trials):
            path = Path(tmp) / f"trial{t}.db"
            answered = run_writer(path, args.threads, args.faces, rng.uniform(args.min_seconds, args.max_seconds), env)
            trials.append(check(path, answered, args.faces))
            print(json.dumps({"trial": t, **trials[-1]}), flush=True)
    summary = {
        "trials": len(trials),
        "answered": sum(int(t["answered"]) for t in trials),
        "lost_answered": sum(int(t["lost_answered"]) for t in trials),
        "half_written": sum(int(t["half_written"]) for t in trials),
        "stored_unanswered": sum(int(t["stored_unanswered"]) for t in trials),
        "index_misses": sum(int(t["index_misses"]) for t in trials),
        "wrong_vectors": sum(int(t["wrong_vectors"]) for t in trials),
        "integrity_failures": sum(not t["integrity_ok"] for t in trials),
    }
    print(json.dumps(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "trials": trials}, indent=1))


if __name__ == "__main__":
    main()
