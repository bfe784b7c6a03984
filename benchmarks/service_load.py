"""Load on the HTTP service: throughput and latency of verify, enroll and search under 1, 4 and
16 concurrent clients, against the same work done in-process, for the HTTP layer's overhead.

For each setting (model x runtime) a real `facerec serve` is started on a free loopback port
with a temporary data directory and a plaintext gallery store; a key with the needed scopes is
created with `facerec keys create`; a gallery is created and a few LFW people are enrolled.
Then each operation runs under each client count: threads, one keep-alive connection each, a
bounded number of requests per setting (`--requests`, shared out among the clients). The
in-process baseline does the same work on the same images with a `RecognitionPipeline` loaded
like the server's (detector, flip, device, runtime) and, for enroll and search, a plaintext
`SQLiteStore`: verify = two `represent` calls and a dot product, enroll = align, the face's
quality (the default scorer, as the service scores every face it enrolls), embed and
`add_faces`, search = `represent` and `search`. Overhead = in-process time per operation /
(1 / HTTP throughput) - 1, i.e. how much more wall time one operation costs through HTTP.

Client and server share the machine's cores, so the client's own CPU time counts against the
service. All traffic stays on 127.0.0.1.

With `--timing` the server runs with `--debug-timing`: each answer's Server-Timing header
gives the server's own stages (read, parse, auth, see = decode + detect, crop, embed =
batch_wait + model, store, other), and their medians per operation are printed and kept in the
rows (`stages_ms`; "client" = the client's wall time minus the server's total: HTTP framing,
the client's own work, the loopback). `--repeats` runs every setting that many times (a new
in-process baseline and a new server each time) for a spread. With `--paired` the 1-client
requests alternate with the same work in-process (in-process first, then over HTTP, request by
request) and the overhead is median HTTP latency / median in-process time - 1: on a machine
shared with others, both sides then see the same moment's load, where a baseline measured
before the server can be minutes and a different load away.

    python benchmarks/service_load.py                      # default/torch, default/onnx, dlib/torch
    python benchmarks/service_load.py --settings default:torch --requests 16 --clients 1 4
    python benchmarks/service_load.py --settings default:auto --clients 1 --timing --paired --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw" / "images"
PEOPLE = ("George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder")
OPERATIONS = ("verify", "enroll", "search")
READY_TIMEOUT_S = 180
REQUEST_TIMEOUT_S = 120
LARGEST = {"several": "largest"}  # as the in-process pipeline: the largest face of an image with several


@dataclass
class Row:
    model: str
    runtime: str
    operation: str
    clients: int
    requests: int
    errors: int
    seconds: float
    throughput: float  # requests per second
    p50_ms: float
    p99_ms: float
    inprocess_ms: float  # median in-process time of the same operation
    overhead_pct: float  # in-process ms vs wall ms per HTTP request at this concurrency
    repeat: int = 0
    stages_ms: dict[str, float] = field(default_factory=dict)  # medians of the Server-Timing stages


def lfw(name: str, number: int) -> Path:
    return LFW / name / f"{name}_{number:04d}.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with few samples p99 is the slowest request or close to it)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


class Service:
    """A `facerec serve` process on loopback with its own data directory."""

    def __init__(self, root: Path, model: str, runtime: str, extra: list[str]) -> None:
        self.model, self.runtime = model, runtime
        self.data_dir = root / f"data-{model}-{runtime}"
        self.data_dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / f"server-{model}-{runtime}.log"
        cli = [sys.executable, "-m", "facerec.cli"]
        scopes = "embed,enroll,search,admin"
        created = subprocess.run(
            [*cli, "keys", "create", "--scope", scopes, "--all-galleries", "--data-dir", str(self.data_dir)],
            check=True,
            capture_output=True,
            text=True,
        )
        self.key = created.stdout.strip().splitlines()[-1]
        command = [*cli, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir), "--device", "cpu"]
        command += ["--model", model, "--runtime", runtime, "--store-plaintext", *extra]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v1/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise SystemExit(f"the server was not ready within {READY_TIMEOUT_S} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def multipart(*images: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"image{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]


class Workload:
    """The images of each operation: verify pairs, faces to enroll, search probes (cycled)."""

    def __init__(self) -> None:
        gallery, pairs, enroll, probes = [], [], [], []
        for name in PEOPLE:
            gallery.append((name, [lfw(name, 1), lfw(name, 2)]))
            pairs.append((lfw(name, 3), lfw(name, 4)))
            enroll.append((name, lfw(name, 5)))
            probes.append(lfw(name, 6))
        self.gallery, self.pairs, self.enroll, self.probes = gallery, pairs, enroll, probes
        paths = {p for _, ps in gallery for p in ps} | {p for pair in pairs for p in pair}
        paths |= {p for _, p in enroll} | set(probes)
        self.bytes = {p: p.read_bytes() for p in paths}

    def request(self, operation: str, i: int) -> tuple[str, dict]:
        """(path, httpx keyword arguments) of the i-th request of an operation."""
        if operation == "verify":
            a, b = self.pairs[i % len(self.pairs)]
            return "/v1/verify", {"files": multipart(self.bytes[a], self.bytes[b]), "data": LARGEST}
        if operation == "enroll":
            name, path = self.enroll[i % len(self.enroll)]
            return f"/v1/galleries/load/subjects/{name}/faces", {"files": multipart(self.bytes[path]), "data": LARGEST}
        probe = self.probes[i % len(self.probes)]
        return "/v1/galleries/load/search", {"files": multipart(self.bytes[probe]), "data": LARGEST}


def prepare_gallery(service: Service, work: Workload) -> None:
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=REQUEST_TIMEOUT_S) as client:
        client.post("/v1/galleries", json={"name": "load"}).raise_for_status()
        for name, paths in work.gallery:
            client.post("/v1/galleries/load/subjects", json={"name": name}).raise_for_status()
            files = multipart(*(work.bytes[p] for p in paths))
            client.post(f"/v1/galleries/load/subjects/{name}/faces", files=files, data=LARGEST).raise_for_status()


def server_stages(response: httpx.Response, elapsed: float) -> dict[str, float]:
    """The Server-Timing stages (ms) of an answer, with "client": the wall time not spent in
    the server (empty without the header)."""
    header = response.headers.get("server-timing", "")
    stages = {name: float(ms) for name, ms in re.findall(r"([a-z_]+);dur=([0-9.]+)", header)}
    if "total" in stages:
        stages["client"] = elapsed * 1e3 - stages["total"]
    return stages


def median_stages(timed: list[dict[str, float]]) -> dict[str, float]:
    names = sorted({name for stages in timed for name in stages})
    return {name: round(statistics.median(s.get(name, 0.0) for s in timed), 2) for name in names}


Load = tuple[list[float], int, float, dict[str, float]]


def load(service: Service, work: Workload, operation: str, clients: int, total: int) -> Load:
    """(latencies in s, errors, wall seconds, median server stages in ms) of `clients` threads
    sharing `total` requests."""
    per_client = max(1, math.ceil(total / clients))
    latencies: list[float] = []
    timed: list[dict[str, float]] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        with httpx.Client(base_url=service.url, headers=service.headers, timeout=REQUEST_TIMEOUT_S) as http:
            http.get("/v1/health")  # open the connection before the clock starts
            barrier.wait()
            for n in range(per_client):
                path, kwargs = work.request(operation, index * per_client + n)
                start = time.perf_counter()
                response = http.post(path, **kwargs)
                elapsed = time.perf_counter() - start
                with lock:
                    if response.is_success:
                        latencies.append(elapsed)
                        timed.append(server_stages(response, elapsed))
                    else:
                        errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}", file=sys.stderr)
    return latencies, len(errors), wall, median_stages(timed)


class InProcess:
    """The service's work done in this process: a pipeline loaded like the server's and a
    plaintext SQLiteStore with the same gallery. As in the server, the model is loaded in the
    main thread and run from another one: on the shared 2-core VM at a load average of 15-20,
    torch run from the thread that loaded it took 8-17 s for one image's detection and
    embedding, from another thread ~0.1-0.2 s (why was not found out)."""

    def __init__(self, model: str, runtime: str, work: Workload, folder: Path) -> None:
        from facerec.eval.quality import DEFAULT_SCORER, build_scorer
        from facerec.pipeline import RecognitionPipeline
        from facerec.serve.store import NewFace

        self.work, self.new_face = work, NewFace
        self.pipeline = RecognitionPipeline.load(model, runtime, detector="mtcnn", flip=True, device="cpu")
        self.scorer = build_scorer(DEFAULT_SCORER)  # the service scores every face it enrolls (serve --quality)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="inprocess")
        self.thread.submit(self._open_store, work, folder).result()

    def _open_store(self, work: Workload, folder: Path) -> None:
        from facerec.serve.store import NewFace, SQLiteStore

        self.store = SQLiteStore(folder / "inprocess.db", plaintext=True)
        first = self.pipeline.represent(work.gallery[0][1][0])
        model_card = self.pipeline.model
        self.store.create_gallery("load", model_card.name, model_card.digest or "0" * 64, {}, first.shape[0])
        for name, paths in work.gallery:
            self.store.add_faces("load", [NewFace(name, self.pipeline.represent(p)) for p in paths])

    def run(self, operation: str, i: int) -> None:
        getattr(self, operation)(i)

    def verify(self, i: int) -> None:
        a, b = self.work.pairs[i % len(self.work.pairs)]
        float(np.dot(self.pipeline.represent(a), self.pipeline.represent(b)))

    def enroll(self, i: int) -> None:
        from facerec.data.transforms import to_tensor

        name, path = self.work.enroll[i % len(self.work.enroll)]
        aligned = self.pipeline.align(path)
        crop = to_tensor(aligned.crop)[None]
        self.scorer(self.pipeline, crop, [aligned.face])
        vector = self.pipeline.embed_tensors(crop)[0].cpu().numpy()
        self.store.add_faces("load", [self.new_face(name, vector)])

    def search(self, i: int) -> None:
        self.store.search("load", self.pipeline.represent(self.work.probes[i % len(self.work.probes)])[None], k=5)

    def timed(self, operation: str, i: int) -> float:
        """Seconds of one operation, timed in the worker thread."""
        return self.thread.submit(self._timed, operation, i).result()

    def _timed(self, operation: str, i: int) -> float:
        start = time.perf_counter()
        self.run(operation, i)
        return time.perf_counter() - start

    def medians(self, operations: list[str], repeats: int) -> dict[str, float]:
        """Median seconds per operation, `repeats` runs each after a warm-up (sequential)."""
        result = {}
        for operation in operations:
            self.timed(operation, 0)
            result[operation] = statistics.median(self.timed(operation, i) for i in range(repeats))
        return result

    def close(self) -> None:
        self.thread.submit(self.store.close).result()
        self.thread.shutdown()


def paired(service: Service, inproc: InProcess, work: Workload, operation: str, total: int) -> Load:
    """One client, each request right after the same work in-process: (HTTP latencies, errors,
    wall seconds of the HTTP requests, median stages), the in-process times in `stages_ms`'s
    place as "inprocess" (ms). Both sides see the same moment's load on a shared machine."""
    latencies, timed, local, errors = [], [], [], 0
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=REQUEST_TIMEOUT_S) as http:
        http.get("/v1/health")
        for i in range(total):
            local.append(inproc.timed(operation, i))
            path, kwargs = work.request(operation, i)
            start = time.perf_counter()
            response = http.post(path, **kwargs)
            elapsed = time.perf_counter() - start
            if response.is_success:
                latencies.append(elapsed)
                timed.append(server_stages(response, elapsed))
            else:
                errors += 1
                print(f"  {response.status_code} {response.text[:200]}", file=sys.stderr)
    stages = median_stages(timed)
    stages["inprocess"] = round(statistics.median(local) * 1e3, 2)
    return latencies, errors, sum(latencies), stages


def versions() -> dict[str, str]:
    import torch

    import facerec

    found = {"python": platform.python_version(), "facerec": getattr(facerec, "__version__", "?")}
    found["torch"] = torch.__version__
    for module in ("onnxruntime", "fastapi", "uvicorn", "httpx"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            found[module] = "absent"
    return found


def measure(setting: str, repeat: int, work: Workload, args: argparse.Namespace, root: Path) -> list[Row]:
    """One run of a model:runtime setting: the in-process work, then a fresh server (with
    --paired, 1-client requests alternate with the same work in-process)."""
    model, runtime = setting.split(":")
    inproc = InProcess(model, runtime, work, root)
    baseline_ms: dict[str, float] = {}
    if not args.paired:
        medians = inproc.medians(args.operations, args.inprocess_repeats)
        baseline_ms = {operation: seconds * 1e3 for operation, seconds in medians.items()}
        print(f"{model}/{runtime} in-process ms: " + ", ".join(f"{k} {v:.1f}" for k, v in baseline_ms.items()))
    extra = args.serve_args.split() + (["--debug-timing"] if args.timing else [])
    service = Service(root, model, runtime, extra)
    rows = []
    try:
        service.wait_ready()
        prepare_gallery(service, work)
        for operation in args.operations:
            load(service, work, operation, 1, 2)  # warm-up
            inproc.timed(operation, 0)  # warm-up
            for clients in sorted(args.clients):
                rows.append(one_row(service, inproc, work, args, operation, clients, baseline_ms))
                rows[-1].repeat = repeat
                print(json.dumps(asdict(rows[-1])), flush=True)
    finally:
        service.stop()
        inproc.close()
    return rows


def one_row(
    service: Service,
    inproc: InProcess,
    work: Workload,
    args: argparse.Namespace,
    operation: str,
    clients: int,
    baseline_ms: dict[str, float],
) -> Row:
    """Overhead: at 1 client paired, median HTTP latency / median in-process time - 1; else
    wall time per request (1 / throughput) / in-process time - 1."""
    if args.paired and clients == 1:
        latencies, errors, wall, stages = paired(service, inproc, work, operation, args.requests)
        baseline_ms[operation] = stages["inprocess"]
    else:
        latencies, errors, wall, stages = load(service, work, operation, clients, args.requests)
    done, ms = len(latencies), baseline_ms.get(operation, float("nan"))
    throughput = done / wall if wall > 0 else 0.0
    p50 = percentile(latencies, 50) * 1e3 if done else float("nan")
    per_request = p50 if args.paired and clients == 1 else (1e3 / throughput if throughput else float("nan"))
    return Row(
        service.model,
        service.runtime,
        operation,
        clients,
        done,
        errors,
        round(wall, 2),
        round(throughput, 2),
        round(p50, 1),
        round(percentile(latencies, 99) * 1e3, 1) if done else float("nan"),
        round(ms, 1),
        round((per_request / ms - 1) * 100, 1),
        0,
        stages,
    )


def print_tables(rows: list[Row]) -> None:
    columns = ["model", "runtime", "operation", "clients", "repeat", "requests", "req/s", "p50 (ms)", "p99 (ms)"]
    columns += ["in-process (ms)", "overhead"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print(
            f"| {r.model} | {r.runtime} | {r.operation} | {r.clients} | {r.repeat} | {r.requests} | "
            f"{r.throughput:.2f} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.inprocess_ms:.0f} | {r.overhead_pct:+.0f}% |"
        )
    timed = [r for r in rows if r.stages_ms]
    if timed:
        names = sorted({name for r in timed for name in r.stages_ms})
        print("\nmedian server stages (ms)\n| setting | operation | clients | repeat | " + " | ".join(names) + " |")
        print("|" + "---|" * (len(names) + 4))
        for r in timed:
            cells = " | ".join(f"{r.stages_ms.get(name, 0.0):.1f}" for name in names)
            print(f"| {r.model}:{r.runtime} | {r.operation} | {r.clients} | {r.repeat} | {cells} |")


STAGES = ("read", "parse", "auth", "see", "crop", "quality", "embed", "store", "other", "client")


def plot_one_client(rows: list[Row], path: Path) -> Path:
    """Per 1-client row: the in-process time beside the HTTP p50, split into the server's
    median stages (with --timing; a stack of medians, so it need not add up to the p50)."""
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    ones = [r for r in rows if r.clients == 1]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(ones)), 4.5))
    x = np.arange(len(ones))
    ax.bar(x - 0.2, [r.inprocess_ms for r in ones], 0.4, color="0.6", label="in-process")
    bottom = np.zeros(len(ones))
    for name in STAGES:
        heights = np.array([r.stages_ms.get(name, 0.0) for r in ones])
        if heights.any():
            ax.bar(x + 0.2, heights, 0.4, bottom=bottom, label=name)
            bottom += heights
    ax.scatter(x + 0.2, [r.p50_ms for r in ones], color="k", marker="_", s=200, label="HTTP p50", zorder=3)
    labels = [f"{r.model}:{r.runtime}\n{r.operation} #{r.repeat}" for r in ones]
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("ms per request (1 client)")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--settings",
        nargs="+",
        default=["default:torch", "default:onnx", "dlib:torch"],
        help="model:runtime pairs (runtime torch, onnx or auto; dlib runs on torch only)",
    )
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--operations", nargs="+", choices=OPERATIONS, default=list(OPERATIONS))
    p.add_argument("--requests", type=int, default=32, help="requests per (operation, clients), shared out")
    p.add_argument("--inprocess-repeats", type=int, default=20, help="in-process runs per operation")
    p.add_argument("--repeats", type=int, default=1, help="runs of every setting (a fresh server each)")
    p.add_argument("--timing", action="store_true", help="serve with --debug-timing and report the stages")
    p.add_argument(
        "--paired",
        action="store_true",
        help="at 1 client, run each request right after the same work in-process (a shared machine's load hits both)",
    )
    p.add_argument("--serve-args", default="", help="more `facerec serve` options, e.g. '--batch-wait-ms 0'")
    p.add_argument("--json", type=Path, help="write the rows here (and a PNG of the 1-client stages beside it)")
    args = p.parse_args()

    work = Workload()
    rows: list[Row] = []
    started = time.monotonic()
    print(json.dumps(versions()))
    with tempfile.TemporaryDirectory(prefix="facerec-load-") as tmp:
        for repeat in range(args.repeats):
            for setting in args.settings:
                root = Path(tmp) / f"{repeat}-{setting.replace(':', '-')}"
                root.mkdir()
                rows += measure(setting, repeat, work, args, root)
                if args.json:  # kept as it grows: a long run stopped early still leaves its rows
                    args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(f"total {time.monotonic() - started:.0f} s")
    print_tables(rows)
    if args.json and rows:
        print(f"plot: {plot_one_client(rows, args.json.with_suffix('.png'))}")


if __name__ == "__main__":
    main()
