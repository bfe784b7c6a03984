"""Crash safety of the HTTP service: `kill -9` of `facerec serve` in the middle of a burst of
concurrent enrolments, on SQLite and on PostgreSQL.

One run: a real `facerec serve` (loopback, temporary data directory, `--model default` with
MTCNN, an encrypted gallery store, an API key made with `facerec keys create`) and one gallery.
Each trial: several client threads enroll subjects over HTTP, each enrolment two requests
(create the subject, then add FACES photos of one LFW person in one request: one transaction, so
"half written" has a meaning); an enrolment counts as answered when the client received its 201
with the face ids. At a random moment of the burst (uniform between --min-seconds and
--max-seconds after its first enrolment was answered) the server process is killed with SIGKILL
(with `--kill-database` the PostgreSQL backend serving it too, which makes PostgreSQL recover
from its write-ahead log). Then:

1. the store is reopened directly by this script, before any server touches it, and checked
   against everything tried and answered so far (crash_check.py, shared with store_crash.py):
   no answered enrolment lost (all its faces, the answered face ids), none half written, every
   stored face its own subject's top-1 in the index rebuilt from the database, the backend's
   integrity check (SQLite: `PRAGMA integrity_check` and `foreign_key_check`; PostgreSQL: every
   vector opens, heap and index scans agree, the gallery's version counter matches);
2. the server is started again on the same store and checked through the API: the gallery's
   subject and face counts equal the database's, and one photo of every subject enrolled in this
   trial is searched and finds that subject first, with one of its stored faces; the audit log
   has an entry for every answered enrolment and names only stored faces;
3. the next trial's burst goes to that restarted server: the store lives through every crash.

    python benchmarks/service_crash.py --backend sqlite --trials 20 --json runs/service_crash/sqlite.json
    python benchmarks/service_crash.py --backend postgres --trials 20 --json runs/service_crash/postgres.json
    python benchmarks/service_crash.py --backend postgres --kill-database --trials 20 \
        --json runs/service_crash/postgres_kill_database.json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from crash_check import Tally, postgres_consistency, tally  # beside this script
from tqdm import tqdm

LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw" / "images"
GALLERY = "crash"
READY_TIMEOUT_S = 300  # the machine may be busy: loading the model can take a while
REQUEST_TIMEOUT_S = 120
CLI = [sys.executable, "-m", "facerec.cli"]


# ---- what is enrolled ------------------------------------------------------------------------
@dataclass
class Enrolment:
    """One subject and the photos sent for it, and what the client was answered."""

    subject: str
    images: list[Path]
    subject_created: bool = False  # its subject request was answered 201
    sent: bool = False  # its faces request went out
    face_ids: list[int] | None = None  # the faces request's answer: enrolled
    refused: bool = False  # the faces request was answered with an error

    @property
    def metadata(self) -> list[dict[str, str]]:
        return [{"image": f"{p.parent.name}/{p.name}"} for p in self.images]


def photo_groups(faces: int, seed: int) -> Iterator[list[Path]]:
    """Disjoint groups of `faces` photos of one LFW person each, shuffled: no photo is enrolled
    twice, so every stored vector is its own subject's alone."""
    groups = []
    for person in sorted(LFW.iterdir()):
        photos = sorted(person.glob("*.jpg"))
        groups += [photos[i : i + faces] for i in range(0, len(photos) - faces + 1, faces)]
    random.Random(seed).shuffle(groups)
    return iter(groups)


def multipart(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


# ---- the server --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """`facerec serve` on loopback over one data directory and store, started again and again."""

    def __init__(self, data_dir: Path, store: str | None, model: str) -> None:
        self.data_dir, self.store, self.model = data_dir, store, model
        self.starts = 0
        made = subprocess.run(
            [*CLI, "keys", "create", "--scope", "enroll,search,admin", "--all-galleries", "--data-dir", str(data_dir)],
            check=True,
            capture_output=True,
            text=True,
        )
        self.key = made.stdout.strip().splitlines()[-1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def start(self) -> None:
        self.port, self.starts = free_port(), self.starts + 1
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.data_dir.parent / f"server-{self.starts}.log"
        command = [*CLI, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir), "--device", "cpu"]
        command += ["--model", self.model, *(["--store", self.store] if self.store else [])]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/v1/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.25)
        self.kill()
        raise SystemExit(f"the server was not ready within {READY_TIMEOUT_S} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


# ---- a burst of enrolments, killed -------------------------------------------------------------
@dataclass
class Burst:
    enrolments: list[Enrolment] = field(default_factory=list)
    in_flight: int = 0  # faces requests sent and not answered when the server was killed
    errors: list[str] = field(default_factory=list)  # answers other than 201 before the kill
    notes: dict[str, Any] = field(default_factory=dict)  # how the kill went (kill() says)


def enroll(
    client: httpx.Client, enrolment: Enrolment, burst: Burst, lock: threading.Lock, first: threading.Event
) -> None:
    """Create the subject, then send its photos in one request; what was answered is recorded."""
    response = client.post(f"/v1/galleries/{GALLERY}/subjects", json={"name": enrolment.subject})
    if response.status_code != 201:  # a refusal while the server is up: recorded, and this client stops
        with lock:
            burst.errors.append(f"subject {enrolment.subject}: {response.status_code} {response.text[:200]}")
        raise RuntimeError("refused")
    enrolment.subject_created, enrolment.sent = True, True
    data = {"metadata": json.dumps(enrolment.metadata), "several": "largest"}
    url = f"/v1/galleries/{GALLERY}/subjects/{enrolment.subject}/faces"
    response = client.post(url, files=multipart(enrolment.images), data=data)
    if response.status_code != 201:
        enrolment.refused = True
        with lock:
            burst.errors.append(f"faces of {enrolment.subject}: {response.status_code} {response.text[:200]}")
        return
    enrolment.face_ids = [face["id"] for face in response.json()["faces"]]
    first.set()


def run_burst(
    service: Service,
    groups: Iterator[list[Path]],
    trial: int,
    clients: int,
    kill_after: float,
    kill: Callable[[], dict[str, Any]],
) -> Burst:
    """`clients` threads enroll until `kill()` kills the server (and says how it went),
    `kill_after` seconds after the first enrolment was answered
    (the first requests after a start are slow, and the burst is then under way)."""
    burst, lock, first = Burst(), threading.Lock(), threading.Event()
    numbers = itertools.count()

    def client(worker: int) -> None:
        with httpx.Client(base_url=service.url, headers=service.headers, timeout=REQUEST_TIMEOUT_S) as http:
            while True:
                with lock:
                    enrolment = Enrolment(f"t{trial}-c{worker}-{next(numbers)}", next(groups))
                    burst.enrolments.append(enrolment)
                try:
                    enroll(http, enrolment, burst, lock, first)
                except (httpx.TransportError, RuntimeError):  # the server is gone (or refused): stop
                    return

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(clients)]
    for thread in threads:
        thread.start()
    first.wait(timeout=REQUEST_TIMEOUT_S)
    time.sleep(kill_after)
    burst.notes = kill()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT_S)
    # the faces requests that were out when the server died and never got their answer
    burst.in_flight = sum(e.sent and e.face_ids is None and not e.refused for e in burst.enrolments)
    return burst


# ---- the backends ----------------------------------------------------------------------------
class SQLiteBackend:
    """Where the store lives, how it is reopened after a crash, what else is checked there."""

    name = "sqlite"

    def __init__(self, root: Path, url: str | None) -> None:
        if url is not None:
            raise SystemExit("--postgres-url needs --backend postgres")

    @property
    def store(self) -> str | None:
        return None  # the service's default: <data-dir>/gallery.db

    def open(self, data_dir: Path) -> Any:
        from facerec.serve.store import open_store

        return open_store(data_dir / "gallery.db", create=False)

    def extra_checks(self) -> list[str]:
        return []  # PRAGMA integrity_check and foreign_key_check are the store's check_integrity

    def kill_database(self) -> int:
        return 0  # an embedded SQLite store has no process of its own

    def log_files(self, data_dir: Path) -> list[Path]:
        """The files every commit writes to: SQLite's write-ahead log."""
        return [data_dir / "gallery.db-wal"]

    def recoveries(self) -> int | None:
        return None  # SQLite rolls its journal back when the store is opened: no log says so

    def close(self) -> None:
        pass


class PostgresBackend(SQLiteBackend):
    """A database on a PostgreSQL server: `url`, or a pgserver started for the run."""

    name = "postgres"

    def __init__(self, root: Path, url: str | None) -> None:
        self.server = None
        if url is None:
            import pgserver
            import psycopg

            self.server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
            with psycopg.connect(self.server.get_uri("postgres"), autocommit=True) as conn:
                conn.execute("CREATE DATABASE crash")
            url = self.server.get_uri("crash")
        self.url = url
        self.backends: list[int] = []

    @property
    def store(self) -> str:
        return self.url

    def open(self, data_dir: Path) -> Any:
        from facerec.serve.store import StoreError, open_store

        deadline = time.monotonic() + 60
        while True:  # after --kill-database the server refuses connections until it has recovered
            try:
                return open_store(self.url, create=False)
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def extra_checks(self) -> list[str]:
        return postgres_consistency(self.url, GALLERY)

    def note_backends(self) -> None:
        """The server processes serving the facerec service's connections (taken while it runs)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        self.backends = [row[0] for row in rows]

    def log_files(self, data_dir: Path) -> list[Path]:
        if self.server is None:
            raise SystemExit("--at-commit needs the pgserver this script starts (no --postgres-url)")
        return sorted((self.server.pgdata / "pg_wal").glob("0*"))

    def kill_database(self) -> int:
        """SIGKILL the backends noted: PostgreSQL then resets every session and replays its WAL."""
        killed = 0
        for pid in self.backends:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        return killed

    def recoveries(self) -> int | None:
        """How often the pgserver's PostgreSQL has replayed its WAL after a crash (from its log);
        None for a server of the caller's."""
        if self.server is None:
            return None
        return (self.server.pgdata / "log").read_text(errors="replace").count("automatic recovery in progress")

    def close(self) -> None:
        if self.server is not None:
            self.server.cleanup()


def wait_for_write(files: list[Path], timeout_s: float = 10.0) -> bool:
    """Return as soon as one of `files` changes (a commit is being written; its answer has not
    gone out yet), or after `timeout_s`: whether it changed."""

    def stamp() -> list[tuple[int, int]]:
        stamps = []
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                stamps.append((stat.st_mtime_ns, stat.st_size))
        return stamps

    before, deadline = stamp(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stamp() != before:
            return True
        time.sleep(0.0002)
    return False


# ---- after the crash ---------------------------------------------------------------------------
BACKENDS = {"sqlite": SQLiteBackend, "postgres": PostgresBackend}


def check_store(backend: SQLiteBackend, data_dir: Path, enrolments: dict[str, Enrolment]) -> Tally:
    """The reopened store against every enrolment tried and answered so far."""

    def expected(subject: str) -> list[dict[str, str]] | None:
        return enrolments[subject].metadata if subject in enrolments else None

    answered = {e.subject: e.face_ids for e in enrolments.values() if e.face_ids is not None}
    with backend.open(data_dir) as store:
        result = tally(store, GALLERY, expected, answered)
        counts = store.counts(GALLERY)
    result.integrity += backend.extra_checks()
    if (counts.subjects, counts.faces) != (len(result.stored | result.empty_subjects), result.face_count):
        result.integrity.append(f"the store's counts {counts} disagree with its subjects and faces read")
    return result


def check_api(service: Service, result: Tally, trial: list[Enrolment]) -> dict[str, int]:
    """Through the restarted service: the gallery's counts, and a search for every subject of the trial."""
    misses = 0
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=REQUEST_TIMEOUT_S) as http:
        listed = {g["name"]: g for g in http.get("/v1/galleries").raise_for_status().json()["galleries"]}
        counts = (len(result.stored | result.empty_subjects), result.face_count)
        wrong_counts = int((listed[GALLERY]["subjects"], listed[GALLERY]["faces"]) != counts)
        for enrolment in (e for e in trial if e.subject in result.complete):
            answer = http.post(
                f"/v1/galleries/{GALLERY}/search",
                files=multipart(enrolment.images[:1]),
                data={"several": "largest", "top_k": 1},
            )
            top = answer.raise_for_status().json()["faces"][0]["matches"][0]
            misses += top["subject"] != enrolment.subject or top["face_id"] not in result.faces[enrolment.subject]
    return {
        "api_searched": sum(e.subject in result.complete for e in trial),
        "api_misses": misses,
        "api_wrong_counts": wrong_counts,
    }


def check_audit(data_dir: Path, result: Tally) -> dict[str, int]:
    """Every answered enrolment has its audit entry (written and fsynced before the answer); no
    entry names a face that is not stored; no line is torn."""
    entries, torn = [], 0
    for line in (data_dir / "audit.log").read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            torn += 1
    audited = {e["subject"]: sorted(e["faces"]) for e in entries if e.get("action") == "add_faces"}
    missing = sum(audited.get(s) != result.faces.get(s) for s in result.answered)
    dangling = sum(ids != result.faces.get(s) for s, ids in audited.items())
    return {"audit_missing": missing, "audit_dangling": dangling, "audit_torn": torn}


# ---- the run ---------------------------------------------------------------------------------
def trial_record(trial: int, kill_after: float, burst: Burst, result: Tally, api: dict, audit: dict) -> dict[str, Any]:
    """One trial's numbers: this trial's enrolments, and the checks over the whole store."""
    mine = {e.subject for e in burst.enrolments}
    return {
        "trial": trial,
        "kill_after_s": round(kill_after, 2),
        "started": sum(e.subject_created for e in burst.enrolments),
        "answered": sum(e.face_ids is not None for e in burst.enrolments),
        "in_flight_at_kill": burst.in_flight,
        "stored_unanswered": len(result.stored_unanswered & mine),
        "empty_subjects": len(result.empty_subjects & mine),
        "refused": len(burst.errors),
        **burst.notes,
        **{k: v for k, v in result.counts().items() if k not in ("answered", "stored_unanswered", "empty_subjects")},
        "answered_total": len(result.answered),  # in this trial and the ones before: all checked again
        "integrity_problems": result.integrity[:5],
        **api,
        **audit,
    }


def summarize(trials: list[dict[str, Any]], results: list[Tally]) -> dict[str, Any]:
    def ever(name: str) -> int:  # subjects found so in any trial's check (each is of the whole store)
        return len(set().union(*(getattr(r, name) for r in results)))

    def total(name: str) -> int:
        return sum(int(t[name]) for t in trials)

    return {
        "trials": len(trials),
        "answered": total("answered"),
        "in_flight_at_kill": total("in_flight_at_kill"),
        "stored_unanswered": total("stored_unanswered"),
        "lost_answered": ever("lost"),
        "half_written": ever("half_written"),
        "index_misses": ever("index_misses"),
        "integrity_failures": sum(not t["integrity_ok"] for t in trials),
        "api_searched": total("api_searched"),
        "api_misses": total("api_misses"),
        "api_wrong_counts": total("api_wrong_counts"),
        "audit_missing": max(t["audit_missing"] for t in trials),
        "audit_dangling": max(t["audit_dangling"] for t in trials),
        "audit_torn": max(t["audit_torn"] for t in trials),
        "refused": total("refused"),
    }


def plot(trials: list[dict[str, Any]], path: Path, title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    x = [t["trial"] for t in trials]
    ax.bar(x, [t["answered"] for t in trials], color="tab:blue", label="answered (201)")
    ax.plot(x, [t["in_flight_at_kill"] for t in trials], "o", color="tab:orange", label="in flight at the kill")
    ax.plot(x, [t["stored_unanswered"] for t in trials], "x", color="tab:green", label="stored, never answered")
    ax.plot(
        x, [t["lost_answered"] + t["half_written"] for t in trials], "s", color="tab:red", label="lost + half written"
    )
    ax.set(xlabel="trial (kill -9 of the server)", ylabel="enrolments", title=title)
    ax.set_ylim(bottom=-0.5)  # the markers at 0 stay visible
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    save_figure(fig, path)


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    backend = BACKENDS[args.backend](root, args.postgres_url)
    rng, groups = random.Random(args.seed), photo_groups(args.faces, args.seed)
    data_dir = root / "data"
    data_dir.mkdir()
    service = Service(data_dir, backend.store, args.model)
    trials: list[dict[str, Any]] = []
    results: list[Tally] = []
    enrolments: dict[str, Enrolment] = {}
    try:
        service.start()
        httpx.post(f"{service.url}/v1/galleries", headers=service.headers, json={"name": GALLERY}).raise_for_status()
        for t in tqdm(range(args.trials), desc=f"kill -9 trials ({backend.name})", unit="trial"):
            if args.kill_database:
                backend.note_backends()
            kill_after = rng.uniform(args.min_seconds, args.max_seconds)

            def kill() -> dict[str, Any]:
                notes = {"killed_at_write": wait_for_write(backend.log_files(data_dir)) if args.at_commit else None}
                # the database backend first: it may be inside a commit
                notes["database_backends_killed"] = backend.kill_database() if args.kill_database else 0
                service.kill()
                return notes

            burst = run_burst(service, groups, t, args.clients, kill_after, kill)
            enrolments.update((e.subject, e) for e in burst.enrolments)
            result = check_store(backend, data_dir, enrolments)
            service.start()
            api = check_api(service, result, burst.enrolments)
            results.append(result)
            api["database_recoveries"] = backend.recoveries()  # so far, in the whole run
            trials.append(trial_record(t, kill_after, burst, result, api, check_audit(data_dir, result)))
            tqdm.write(json.dumps(trials[-1]))
    finally:
        service.stop()
        backend.close()
    return {"summary": summarize(trials, results), "trials": trials}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=sorted(BACKENDS), default="sqlite")
    p.add_argument("--postgres-url", help="a database for the store (default: a pgserver started for the run)")
    p.add_argument("--kill-database", action="store_true", help="also SIGKILL the PostgreSQL backend of the service")
    p.add_argument(
        "--at-commit",
        action="store_true",
        help="kill the moment the store's write-ahead log next changes after the random delay (mid-commit)",
    )
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    p.add_argument("--faces", type=int, default=3, help="photos per enrolment (one request, one transaction)")
    p.add_argument("--min-seconds", type=float, default=0.5, help="earliest kill after the first answer")
    p.add_argument("--max-seconds", type=float, default=6.0, help="latest kill after the first answer")
    p.add_argument("--model", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the summary and per-trial results here (and a PNG beside it)")
    args = p.parse_args()
    if not LFW.is_dir():
        raise SystemExit(f"LFW not found at {LFW}")
    if args.kill_database and args.backend != "postgres":
        raise SystemExit("--kill-database needs --backend postgres")
    os.environ["FACEREC_STORE_KEY"] = os.urandom(32).hex()  # the server and this script share it
    root = Path(tempfile.mkdtemp(prefix="facerec-service-crash-"))
    try:
        report = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report["summary"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, **report}, indent=1))
        plot(report["trials"], args.json.with_suffix(".png"), f"kill -9 of facerec serve ({args.backend})")


if __name__ == "__main__":
    main()
