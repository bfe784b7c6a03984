"""Gallery store at scale: how fast faces are written (encrypted, one transaction per batch), how
long reopening takes (decrypting every vector and building the index), and search: exact inner
product against the approximate indexes (faiss inverted file, HNSW graph), with their recall@1
measured against exact search.

One face per subject. Gallery vectors are either random unit vectors (`--vectors random`: no
structure at all, the worst case for any index) or face-like (`--like EMB.npz`): identity
centres drawn from a Gaussian with the mean and between-identity covariance of real embeddings
(an embeddings .npz that `facerec eval` writes, identities from the folder names), each face
the centre plus within-identity noise of the real within-identity covariance. Probes are
"mated" (another face of an enrolled subject: a new photo; with random vectors, the enrolled
vector plus Gaussian noise) or "non-mated" (a subject nobody enrolled).

    python benchmarks/store_search.py --sizes 10000 100000
    python benchmarks/store_search.py --sizes 1000000 --index ivf --like runs/lfw/embeddings.npz
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


def latency_ms(index: GalleryIndex, probes: np.ndarray) -> tuple[float, float]:
    """Median and 99th percentile of single-probe searches (top 5 subjects), over 500 probes."""
    times = []
    for probe in probes[:500]:
        start = time.perf_counter()
        index.search(probe[None], 5)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), 1000 * float(np.percentile(times, 99))


def recall_at_1(found: GalleryIndex, exact: GalleryIndex, probes: np.ndarray) -> float:
    approx, truth = found.search(probes, 1), exact.search(probes, 1)
    return float(np.mean([a[0].face_id == e[0].face_id for a, e in zip(approx, truth, strict=True)]))


class RandomVectors:
    """Unit vectors with no structure; a mated probe is the enrolled vector plus noise."""

    def __init__(self, dim: int, rng: np.random.Generator) -> None:
        self.dim, self.rng = dim, rng

    def gallery(self, n: int) -> np.ndarray:
        self.enrolled = unit(self.rng.standard_normal((n, self.dim)))
        return self.enrolled

    def mated(self, count: int) -> np.ndarray:
        rows = self.enrolled[self.rng.choice(len(self.enrolled), count)]
        return unit(rows + 0.05 * self.rng.standard_normal((count, self.dim)))

    def non_mated(self, count: int) -> np.ndarray:
        return unit(self.rng.standard_normal((count, self.dim)))


class FaceLikeVectors:
    """Identity centres ~ N(mean, between-identity covariance) and faces = centre + N(0,
    within-identity covariance), both covariances measured on real embeddings."""

    def __init__(self, embeddings: Path, rng: np.random.Generator) -> None:
        data = np.load(embeddings)
        rows = data["plain"].astype(np.float64)
        people = np.array([Path(str(name)).parent.name for name in data["names"]])
        names, person = np.unique(people, return_inverse=True)
        centres = np.stack([rows[person == k].mean(axis=0) for k in range(len(names))])
        self.mean = centres.mean(axis=0)
        self.between = np.linalg.cholesky(np.cov(centres.T) + 1e-9 * np.eye(rows.shape[1]))
        spread = rows - centres[person]
        repeated = np.bincount(person)[person] > 1  # a single image says nothing about the spread
        self.within = np.linalg.cholesky(np.cov(spread[repeated].T) + 1e-9 * np.eye(rows.shape[1]))
        self.dim, self.rng = rows.shape[1], rng

    def _centres(self, n: int) -> np.ndarray:
        return self.mean + self.rng.standard_normal((n, self.dim)) @ self.between.T

    def _face(self, centres: np.ndarray) -> np.ndarray:
        return unit(centres + self.rng.standard_normal(centres.shape) @ self.within.T)

    def gallery(self, n: int) -> np.ndarray:
        self.centres = self._centres(n)
        return self._face(self.centres)

    def mated(self, count: int) -> np.ndarray:
        return self._face(self.centres[self.rng.choice(len(self.centres), count)])

    def non_mated(self, count: int) -> np.ndarray:
        return self._face(self._centres(count))


def measure(n: int, source: RandomVectors | FaceLikeVectors, queries: int, policies: list[IndexPolicy]) -> list[str]:
    vectors = source.gallery(n)
    dim = vectors.shape[1]
    ids, subjects = np.arange(1, n + 1), [f"s{i}" for i in range(n)]
    mated, non_mated = source.mated(queries), source.non_mated(queries)
    with tempfile.TemporaryDirectory() as tmp:
        rate = fill_store(Path(tmp) / "store.db", vectors)
        reopen = reopen_seconds(Path(tmp) / "store.db", n, dim)
        size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
    exact = GalleryIndex.build(dim, IndexPolicy(exact_limit=n), ids, subjects, vectors)
    exact_median, exact_p99 = latency_ms(exact, mated)
    head = f"| {n:,} | {rate:,.0f} | {size_mb:.0f} | {reopen:.1f} | {exact_median:.2f} | {exact_p99:.2f}"
    rows = []
    for policy in policies:
        start = time.perf_counter()
        found = GalleryIndex.build(dim, policy, ids, subjects, vectors)
        build = time.perf_counter() - start
        median, p99 = latency_ms(found, mated)
        rows.append(
            f"{head} | {describe(policy)} | {build:.1f} | {median:.2f} | {p99:.2f} "
            f"| {recall_at_1(found, exact, mated):.3f} | {recall_at_1(found, exact, non_mated):.3f} |"
        )
    return rows


def describe(policy: IndexPolicy) -> str:
    if policy.approximate == "ivf":
        return f"ivf, probe {policy.ivf_probe_fraction:g}"
    return f"hnsw, ef {policy.hnsw_ef_search}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--dim", type=int, default=128, help="random vectors' dimension (--like: the embeddings')")
    p.add_argument("--like", type=Path, help="embeddings .npz of real faces: face-like vectors (default: random)")
    p.add_argument("--queries", type=int, default=1000, help="probes of each kind for recall and p99")
    p.add_argument("--index", nargs="+", default=["ivf", "hnsw"], choices=["ivf", "hnsw"])
    p.add_argument("--ef", type=int, nargs="+", default=[IndexPolicy().hnsw_ef_search], help="HNSW efSearch values")
    p.add_argument(
        "--probe", type=float, nargs="+", default=[IndexPolicy().ivf_probe_fraction], help="IVF share of lists probed"
    )
    args = p.parse_args()
    import faiss

    policy = IndexPolicy()
    rng = np.random.default_rng(0)
    source = FaceLikeVectors(args.like, rng) if args.like else RandomVectors(args.dim, rng)
    print(
        f"{platform.machine()}, {faiss.omp_get_max_threads()} threads, faiss {faiss.__version__}, "
        f"{'face-like vectors from ' + str(args.like) if args.like else f'random {args.dim}-d vectors'}, "
        f"HNSW M={policy.hnsw_neighbors} efConstruction={policy.hnsw_ef_construction}, "
        f"IVF sqrt(n) x {policy.ivf_lists_per_sqrt:g} lists, default exact limit {policy.exact_limit:,} faces\n"
    )
    print(
        "| faces | store writes (faces/s) | file (MB) | reopen, exact (s) | exact query (ms) | exact p99 (ms) "
        "| index | build (s) | query (ms) | p99 (ms) | recall@1 mated | recall@1 non-mated |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    policies = [
        IndexPolicy(exact_limit=0, approximate="ivf", ivf_probe_fraction=f) for f in args.probe if "ivf" in args.index
    ]
    policies += [
        IndexPolicy(exact_limit=0, approximate="hnsw", hnsw_ef_search=ef) for ef in args.ef if "hnsw" in args.index
    ]
    for n in args.sizes:
        for row in measure(n, source, args.queries, policies):
            print(row, flush=True)


if __name__ == "__main__":
    main()
