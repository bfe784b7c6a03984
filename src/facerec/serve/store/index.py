"""In-memory vector indexes of one gallery, built from the store and kept in step with it.

Small galleries are searched exactly (a numpy inner product over every face); past
`IndexPolicy.exact_limit` faces an approximate faiss index takes over (`APPROXIMATE`: an
inverted file of exact vectors, "ivf", or an HNSW graph, "hnsw"; their recall against exact
search is measured by benchmarks/store_search.py and the tests). A deleted face leaves the
results at once: the exact index drops its row, the inverted file removes it, the graph masks
it (faiss ID selector) until enough faces are masked that it is rebuilt without them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from facerec.serve.store.base import Match


@dataclass(frozen=True)
class IndexPolicy:
    # faces; more than this: the `approximate` index. Below it the exact scan is fast enough
    # (4.4 ms a query at 100k 128-d faces on 2 cores).
    exact_limit: int = 100_000
    approximate: str = "ivf"  # ivf | hnsw (APPROXIMATE)
    # IVF: sqrt(faces) * ivf_lists_per_sqrt lists, searched `ivf_probe_fraction` of them; at 1M
    # faces 1,000 lists and 250 probed (a quarter of the vectors scanned, exactly).
    ivf_lists_per_sqrt: float = 1.0
    ivf_probe_fraction: float = 0.25
    ivf_retrain_growth: float = 4.0  # retrain the lists when the gallery grew this much since
    hnsw_neighbors: int = 32  # M: links per node
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128  # raised to the number of results asked for
    rebuild_fraction: float = 0.2  # rebuild the graph when this share of its nodes is deleted


class VectorIndex(Protocol):
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: Iterable[int]) -> None: ...
    def search(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the `m` best faces per query, best first; id -1 pads missing ones."""
        ...

    def __len__(self) -> int: ...

    @property
    def stale(self) -> bool:
        """The index should be built afresh from its vectors (`vectors()`)."""
        ...

    def vectors(self) -> tuple[np.ndarray, np.ndarray]: ...


class ExactIndex:
    """Every vector in one growing matrix; removal moves the last row into the gap."""

    def __init__(self, dimension: int) -> None:
        self._rows = np.zeros((0, dimension), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._size = 0
        self._position: dict[int, int] = {}

    def __len__(self) -> int:
        return self._size

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._reserve(self._size + len(ids))
        end = self._size + len(ids)
        self._rows[self._size : end] = vectors
        self._ids[self._size : end] = ids
        self._position.update((int(i), self._size + k) for k, i in enumerate(ids))
        self._size = end

    def _reserve(self, size: int) -> None:
        """Capacity doubles, so adding faces one at a time stays linear overall."""
        if size <= len(self._rows):
            return
        capacity = max(size, 2 * len(self._rows), 64)
        rows = np.zeros((capacity, self._rows.shape[1]), dtype=np.float32)
        ids = np.zeros(capacity, dtype=np.int64)
        rows[: self._size], ids[: self._size] = self._rows[: self._size], self._ids[: self._size]
        self._rows, self._ids = rows, ids

    def remove(self, ids: Iterable[int]) -> None:
        for face in ids:
            gap = self._position.pop(int(face), None)
            if gap is None:
                continue
            last = self._size - 1
            if gap != last:
                self._rows[gap], self._ids[gap] = self._rows[last], self._ids[last]
                self._position[int(self._ids[gap])] = gap
            self._size = last

    stale = False

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        return self._ids[: self._size].copy(), self._rows[: self._size].copy()

    def search(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ self._rows[: self._size].T
        m = min(m, self._size)
        top = np.argpartition(-scores, m - 1, axis=1)[:, :m] if m < self._size else np.argsort(-scores, axis=1)
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top_scores, order, axis=1), self._ids[np.take_along_axis(top, order, axis=1)]


class HNSWIndex:
    """A faiss HNSW graph (inner product) over positions; deleted positions are masked."""

    def __init__(self, dimension: int, policy: IndexPolicy) -> None:
        import faiss

        self._faiss = faiss
        self._policy = policy
        self._graph = faiss.IndexHNSWFlat(dimension, policy.hnsw_neighbors, faiss.METRIC_INNER_PRODUCT)
        self._graph.hnsw.efConstruction = policy.hnsw_ef_construction
        self._ids = np.zeros(0, dtype=np.int64)  # face id of each graph position
        self._position: dict[int, int] = {}
        self._deleted: set[int] = set()  # masked positions
        self._mask: tuple[Any, Any] | None = None  # faiss selectors of the live positions (None: all)

    def __len__(self) -> int:
        return len(self._ids) - len(self._deleted)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        start = len(self._ids)
        self._graph.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=np.int64)])
        self._position.update((int(i), start + k) for k, i in enumerate(ids))

    def remove(self, ids: Iterable[int]) -> None:
        for face in ids:
            position = self._position.pop(int(face), None)
            if position is not None:
                self._deleted.add(position)
        self._mask = self._selector()

    @property
    def stale(self) -> bool:
        """Enough nodes are masked that searching walks mostly dead ends: time to rebuild."""
        return len(self._deleted) > self._policy.rebuild_fraction * len(self._ids)

    def _selector(self) -> Any:
        if not self._deleted:
            return None
        faiss = self._faiss
        deleted = faiss.IDSelectorBatch(np.fromiter(self._deleted, dtype=np.int64))
        # IDSelectorNot holds a raw pointer to `deleted`: keep both alive together
        return deleted, faiss.IDSelectorNot(deleted)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        live = np.array(sorted(self._position.values()), dtype=np.int64)
        rows = self._graph.reconstruct_n(0, len(self._ids))[live] if len(live) else np.zeros((0, self._graph.d))
        return self._ids[live], rows.astype(np.float32)

    def search(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        params = self._faiss.SearchParametersHNSW(efSearch=max(self._policy.hnsw_ef_search, m))
        if self._mask is not None:
            params.sel = self._mask[1]
        scores, positions = self._graph.search(np.ascontiguousarray(queries), m, params=params)
        ids = np.where(positions >= 0, self._ids[np.maximum(positions, 0)], -1)
        return scores, ids


class IVFIndex:
    """A faiss inverted file of exact vectors (inner product), keyed by face id: the lists are
    k-means cells of the vectors it was built from; a query scans the nearest cells exactly."""

    def __init__(self, dimension: int, policy: IndexPolicy) -> None:
        self._dimension, self._policy = dimension, policy
        self._index: Any = None  # made by the first add, whose vectors train the lists
        self._trained_on = 0

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._index is None:
            self._index = self._train(vectors)
        self._index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def _train(self, vectors: np.ndarray) -> Any:
        import faiss

        lists = max(1, min(len(vectors) // 39, round(self._policy.ivf_lists_per_sqrt * np.sqrt(len(vectors)))))
        index = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(self._dimension), self._dimension, lists, faiss.METRIC_INNER_PRODUCT
        )
        # faiss's k-means samples 256 vectors per list at most; a fixed seed keeps results reproducible
        index.cp.seed = 1234
        index.train(vectors)
        index.nprobe = max(1, round(self._policy.ivf_probe_fraction * lists))
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # vectors() reads rows back by id
        self._trained_on = len(vectors)
        return index

    def remove(self, ids: Iterable[int]) -> None:
        import faiss

        gone = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if self._index is not None and len(gone):
            # the id hashtable (direct map) removes only by an explicit array of ids
            self._index.remove_ids(faiss.IDSelectorArray(len(gone), faiss.swig_ptr(gone)))

    @property
    def stale(self) -> bool:
        """The gallery outgrew the vectors the lists were trained on: the cells are too coarse."""
        return len(self) > self._policy.ivf_retrain_growth * self._trained_on

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if not len(self):
            return np.zeros(0, dtype=np.int64), np.zeros((0, self._dimension), dtype=np.float32)
        invlists = self._index.invlists
        ids = np.concatenate([self._faiss_ids(invlists, k) for k in range(self._index.nlist) if invlists.list_size(k)])
        return ids, np.vstack([self._index.reconstruct(int(i)) for i in ids]).astype(np.float32)

    @staticmethod
    def _faiss_ids(invlists: Any, cell: int) -> np.ndarray:
        import faiss

        return faiss.rev_swig_ptr(invlists.get_ids(cell), invlists.list_size(cell)).copy()

    def search(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        return self._index.search(np.ascontiguousarray(queries, dtype=np.float32), m)


APPROXIMATE: dict[str, type[IVFIndex] | type[HNSWIndex]] = {"ivf": IVFIndex, "hnsw": HNSWIndex}


class GalleryIndex:
    """The index of one gallery, with each face's subject: searches answer per subject."""

    def __init__(self, dimension: int, policy: IndexPolicy) -> None:
        self.policy = policy
        self.dimension = dimension
        if policy.approximate not in APPROXIMATE:
            raise ValueError(f"unknown approximate index '{policy.approximate}' (choose: {', '.join(APPROXIMATE)})")
        self.vectors: VectorIndex = ExactIndex(dimension)
        self._subject: dict[int, str] = {}
        self._faces_of = Counter[str]()
        # how many subjects have each face count: the largest count is read per search without
        # a pass over every subject (a max over 1M subjects cost ~10 ms a query)
        self._subjects_with = Counter[int]()

    @classmethod
    def build(
        cls, dimension: int, policy: IndexPolicy, ids: np.ndarray, subjects: list[str], rows: np.ndarray
    ) -> GalleryIndex:
        index = cls(dimension, policy)
        index.add(ids, subjects, rows)
        return index

    def _fresh(self, ids: np.ndarray, rows: np.ndarray) -> VectorIndex:
        """A new index of these vectors: exact up to the policy's limit, approximate above."""
        if len(ids) <= self.policy.exact_limit:
            fresh: VectorIndex = ExactIndex(self.dimension)
        else:
            fresh = APPROXIMATE[self.policy.approximate](self.dimension, self.policy)
        fresh.add(ids, rows)
        return fresh

    def __len__(self) -> int:
        return len(self._subject)

    @property
    def approximate(self) -> bool:
        return not isinstance(self.vectors, ExactIndex)

    def add(self, ids: np.ndarray, subjects: list[str], rows: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if isinstance(self.vectors, ExactIndex) and len(self) + len(ids) > self.policy.exact_limit:
            old_ids, old_rows = self.vectors.vectors()
            self.vectors = self._fresh(np.concatenate([old_ids, ids]), np.vstack([old_rows, rows]))
        else:
            self.vectors.add(ids, rows)
            if self.vectors.stale:
                self.vectors = self._fresh(*self.vectors.vectors())
        for face, subject in zip(ids, subjects, strict=True):
            self._subject[int(face)] = subject
            self._count_face(subject, +1)

    def remove(self, ids: Iterable[int]) -> None:
        ids = [int(i) for i in ids if int(i) in self._subject]
        self.vectors.remove(ids)
        if self.vectors.stale:
            self.vectors = self._fresh(*self.vectors.vectors())
        for face in ids:
            self._count_face(self._subject.pop(face), -1)

    def _count_face(self, subject: str, change: int) -> None:
        before = self._faces_of[subject]
        after = before + change
        if before:
            self._subjects_with[before] -= 1
            if not self._subjects_with[before]:
                del self._subjects_with[before]
        if after:
            self._faces_of[subject] = after
            self._subjects_with[after] += 1
        else:
            del self._faces_of[subject]

    @property
    def most_faces_of_one_subject(self) -> int:
        return max(self._subjects_with, default=0)

    def search(self, queries: np.ndarray, k: int) -> list[list[Match]]:
        if not len(self):
            return [[] for _ in queries]
        # k subjects are among the best k * (most faces of one subject) faces
        m = min(len(self), k * self.most_faces_of_one_subject)
        scores, ids = self.vectors.search(queries, m)
        return [self._best_per_subject(row_scores, row_ids, k) for row_scores, row_ids in zip(scores, ids, strict=True)]

    def _best_per_subject(self, scores: np.ndarray, ids: np.ndarray, k: int) -> list[Match]:
        """Faces come best first, so the first face seen of a subject is its best."""
        found: dict[str, Match] = {}
        for score, face in zip(scores.tolist(), ids.tolist(), strict=True):
            if face < 0:
                break
            subject = self._subject[face]
            if subject not in found:
                found[subject] = Match(subject, face, float(score))
                if len(found) == k:
                    break
        return list(found.values())
