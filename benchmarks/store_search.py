"""Gallery store at scale: how fast faces are written (encrypted, one transaction per batch), how
long reopening takes (decrypting every vector and building the index), and search: exact inner
product against the faiss HNSW graph, with the graph's recall@1 measured against exact search.

Vectors are random unit vectors, one face per subject. Probes are "noisy" (an enrolled face
plus Gaussian noise, like a new photo of someone enrolled) or "random" (nobody enrolled: the
hardest case for a graph, since no neighbor stands out).

    python benchmarks/store_search.py --sizes 10000 100000
    python benchmarks/store_search.py --sizes 1000000 --dim 128 --ef 64 128 256
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from facerec.serve.store import IndexPolicy, NewFace, SQLiteStore
from facerec.serve.store.index import GalleryIndex

BATCH = 1000  # faces per transaction when filling the store


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def fill_store(path: Path, vectors: np.ndarray) -> float:
    """Faces per second written into a new encrypted store."""
    with SQLiteStore(path, key=bytes(range(32))) as store:
        store.create_gallery("g", "bench", "0" * 64, {}, vectors.shape[1])
        start = time.perf_counter()
        for first in range(0, len(vectors), BATCH):
            faces = [NewFace(f"s{first + k}", v) for k, v in enumerate(vectors[first : first + BATCH])]
            store.add_faces("g", faces)
        return len(vectors) / (time.perf_counter() - start)


def reopen_seconds(path: Path, n: int, dim: int) -> float:
    """Open the store and answer a first search: decrypt every vector into the exact index (a
    graph's build time comes on top: the HNSW build column)."""
    start = time.perf_counter()
    with SQLiteStore(path, key=bytes(range(32)), policy=IndexPolicy(exact_limit=n)) as store:
        store.search("g", np.ones(dim, dtype=np.float32), k=1)
    return time.perf_counter() - start


def query_ms(index: GalleryIndex, probes: np.ndarray) -> float:
    """Median time of one single-probe search, top 5 subjects."""
    times = []
    for probe in probes[:200]:
        start = time.perf_counter()
        index.search(probe[None], 5)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def recall_at_1(graph: GalleryIndex, exact: GalleryIndex, probes: np.ndarray) -> float:
    found, truth = graph.search(probes, 1), exact.search(probes, 1)
    return float(np.mean([g[0].face_id == e[0].face_id for g, e in zip(found, truth, strict=True)]))


def measure(n: int, dim: int, queries: int, ef_values: list[int], rng: np.random.Generator) -> list[str]:
    vectors = unit(rng.standard_normal((n, dim)))
    ids, subjects = np.arange(1, n + 1), [f"s{i}" for i in range(n)]
    noisy = unit(vectors[rng.choice(n, queries)] + 0.05 * rng.standard_normal((queries, dim)))
    random = unit(rng.standard_normal((queries, dim)))
    with tempfile.TemporaryDirectory() as tmp:
        rate = fill_store(Path(tmp) / "store.db", vectors)
        reopen = reopen_seconds(Path(tmp) / "store.db", n, dim)
        size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
    exact = GalleryIndex.build(dim, IndexPolicy(exact_limit=n), ids, subjects, vectors)
    exact_ms = query_ms(exact, noisy)
    rows = []
    for ef in ef_values:
        policy = IndexPolicy(exact_limit=0, hnsw_ef_search=ef)
        start = time.perf_counter()
        graph = GalleryIndex.build(dim, policy, ids, subjects, vectors)
        build = time.perf_counter() - start
        rows.append(
            f"| {n:,} | {rate:,.0f} | {size_mb:.0f} | {reopen:.1f} | {exact_ms:.2f} | {ef} | {build:.1f} "
            f"| {query_ms(graph, noisy):.2f} | {recall_at_1(graph, exact, noisy):.3f} "
            f"| {recall_at_1(graph, exact, random):.3f} |"
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000, help="probes of each kind for recall")
    p.add_argument("--ef", type=int, nargs="+", default=[IndexPolicy().hnsw_ef_search], help="HNSW efSearch values")
    args = p.parse_args()
    import faiss

    policy = IndexPolicy()
    print(
        f"{platform.machine()}, {faiss.omp_get_max_threads()} threads, faiss {faiss.__version__}, {args.dim}-d, "
        f"HNSW M={policy.hnsw_neighbors} efConstruction={policy.hnsw_ef_construction}, "
        f"default exact limit {policy.exact_limit:,} faces\n"
    )
    print(
        "| faces | store writes (faces/s) | file (MB) | reopen, exact (s) | exact query (ms) | efSearch "
        "| HNSW build (s) | HNSW query (ms) | recall@1 noisy | recall@1 random |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n in args.sizes:
        for row in measure(n, args.dim, args.queries, args.ef, rng):
            print(row, flush=True)


if __name__ == "__main__":
    main()
