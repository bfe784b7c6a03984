"""kill -9 of `facerec serve` in the middle of concurrent enrolments over HTTP loses no answered
enrolment and leaves no half-written one, on SQLite and on PostgreSQL
(benchmarks/service_crash.py, a few trials); and the checks it shares with
benchmarks/store_crash.py (benchmarks/crash_check.py) do catch a damaged store."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_lfw, needs_mtcnn
from facerec.serve.store import NewFace, SQLiteStore

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "service_crash.py"
FACES = 3


def crash_check():
    """benchmarks/crash_check.py as a module (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("crash_check", BENCHMARKS / "crash_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def metadata(subject: str) -> list[dict[str, str]]:
    return [{"image": f"{subject}/{k}.jpg"} for k in range(FACES)]


def vector(subject: str, k: int) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(f"{subject}/{k}".encode())).normal(size=8)


def enroll(store, subject: str, faces: list[int]) -> list[int]:
    new = [NewFace(subject, vector(subject, k), metadata(subject)[k]) for k in faces]
    return [record.id for record in store.add_faces("g", new)]


# ---- the checks catch what they look for -------------------------------------------------------
def test_the_shared_checks_find_lost_half_written_and_unanswered_enrolments(tmp_path):
    check = crash_check()
    with SQLiteStore(tmp_path / "store.db", plaintext=True) as store:
        store.create_gallery("g", "m", "0" * 64, {}, 8)
        ids = {s: enroll(store, s, [0, 1, 2]) for s in ("ok", "late", "wrong-ids", "extra")}
        enroll(store, "half", [0, 2])  # one face of three missing
        enroll(store, "extra", [1])  # a face too many
        enroll(store, "stranger", [0, 1, 2])  # never sent by any client
        store.create_subject("g", "empty")
        sent = {s: metadata(s) for s in ("ok", "late", "wrong-ids", "extra", "half", "gone", "empty")}
        answered = {"ok": ids["ok"], "wrong-ids": [i + 1000 for i in ids["wrong-ids"]], "half": None, "gone": None}
        result = check.tally(store, "g", sent.get, answered, lambda s, m: vector(s, int(m["image"][-5])))
    assert result.complete == {"ok", "late", "wrong-ids"}
    assert result.lost == {"wrong-ids", "half", "gone"}  # answered, but not (all) there
    assert result.half_written == {"half", "extra", "stranger"}
    assert result.stored_unanswered == {"late"}  # committed, never answered: not a loss
    assert result.empty_subjects == {"empty"}
    assert not result.index_misses and not result.wrong_vectors and not result.integrity


def test_the_shared_checks_find_a_vector_that_is_not_the_one_sent(tmp_path):
    check = crash_check()
    with SQLiteStore(tmp_path / "store.db", plaintext=True) as store:
        store.create_gallery("g", "m", "0" * 64, {}, 8)
        enroll(store, "a", [0, 1, 2])
        enroll(store, "b", [0, 1, 2])
        sent = {"a": metadata("a"), "b": metadata("b")}

        def reference(subject: str, meta: dict) -> np.ndarray:  # b's second face was sent as another
            k = int(meta["image"][-5])
            return vector(subject, k) if (subject, k) != ("b", 1) else vector("b", 7)

        result = check.tally(store, "g", sent.get, {"a": None, "b": None}, reference)
    assert result.wrong_vectors == {"b"} and not result.lost and not result.half_written


def test_postgres_consistency_finds_a_version_counter_out_of_step(postgres_server):
    import psycopg

    from facerec.serve.store.postgres import PostgresStore

    check = crash_check()
    url = postgres_server.new_database()
    with PostgresStore(url, plaintext=True) as store:
        store.create_gallery("g", "m", "0" * 64, {}, 8)
        enroll(store, "a", [0, 1, 2])
        enroll(store, "b", [0, 1])
        store.create_subject("g", "empty")
    assert check.postgres_consistency(url, "g") == []  # every btree index read and matched
    with psycopg.connect(url, autocommit=True) as conn:  # a write that raised the counter alone
        conn.execute("UPDATE galleries SET version = version + 1")
    assert check.postgres_consistency(url, "g") == ["gallery version 3 but 2 enrolled subjects"]


# ---- the trials: a real server killed mid-burst ------------------------------------------------
def run_trials(tmp_path: Path, trials: int, *options: str) -> dict:
    out = tmp_path / "crash.json"
    args = ["--trials", str(trials), "--clients", "4", "--min-seconds", "0.5", "--max-seconds", "3", "--json", str(out)]
    done = subprocess.run([sys.executable, str(SCRIPT), *args, *options], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())["summary"]


def assert_safe(summary: dict, trials: int) -> None:
    assert summary["trials"] == trials and summary["answered"] > 0
    assert summary["in_flight_at_kill"] > 0  # killed mid-burst, not idle
    assert summary["lost_answered"] == 0
    assert summary["half_written"] == 0
    assert summary["index_misses"] == 0 and summary["integrity_failures"] == 0
    assert summary["api_searched"] > 0 and summary["api_misses"] == 0 and summary["api_wrong_counts"] == 0
    assert summary["audit_missing"] == summary["audit_dangling"] == summary["audit_torn"] == 0
    assert summary["refused"] == 0


needs_service = pytest.mark.skipif(
    importlib.util.find_spec("httpx") is None or importlib.util.find_spec("fastapi") is None,
    reason="the service needs httpx and fastapi: pip install -e '.[serve,test]'",
)


@pytest.mark.slow  # each trial starts the server again: about a minute on a busy 2-core machine
@needs_lfw
@needs_mtcnn
@needs_service
def test_killed_service_loses_no_answered_enrolment_on_sqlite(tmp_path):
    assert_safe(run_trials(tmp_path, 2, "--backend", "sqlite"), trials=2)


@pytest.mark.slow
@needs_lfw
@needs_mtcnn
@needs_service
def test_killed_service_loses_no_answered_enrolment_on_postgres(tmp_path, postgres_server):
    url = postgres_server.new_database()
    assert_safe(run_trials(tmp_path, 1, "--backend", "postgres", "--postgres-url", url), trials=1)
