"""Deterministic, resumable batch samplers yielding (index, augmentation seed) pairs.

Batch b of epoch e is a pure function of (seed, e, b), so training resumes exactly from a
checkpoint that stores (epoch, batch) and never re-reads the batches it skips.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from facerec.errors import DataError

Batch = list[tuple[int, int]]


class ResumableBatchSampler:
    def __init__(self, seed: int) -> None:
        self.seed, self.epoch, self.start_batch = seed, 0, 0

    def set_position(self, epoch: int, batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, batch

    def epoch_batches(self, rng: np.random.Generator) -> list[list[int]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = self.epoch_batches(rng)
        seeds = rng.integers(0, 2**62, size=(len(batches), max(map(len, batches), default=0)))
        start, self.start_batch = self.start_batch, 0
        for b in range(start, len(batches)):
            yield [(int(i), int(s)) for i, s in zip(batches[b], seeds[b], strict=False)]

    def __len__(self) -> int:
        raise NotImplementedError


class ShuffleBatchSampler(ResumableBatchSampler):
    """Random permutation each epoch, full batches only."""

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0) -> None:
        super().__init__(seed)
        if num_samples < batch_size:
            raise DataError(f"dataset has {num_samples} images, fewer than one batch ({batch_size})")
        self.num_samples, self.batch_size = num_samples, batch_size

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def epoch_batches(self, rng: np.random.Generator) -> list[list[int]]:
        order = rng.permutation(self.num_samples)
        n = len(self) * self.batch_size
        return order[:n].reshape(len(self), self.batch_size).tolist()


class PKBatchSampler(ResumableBatchSampler):
    """P identities x K images per batch (for pair and triplet losses, and for relational
    distillation, which otherwise sees almost no same-person pairs).

    Each epoch visits every identity once, in random order; an identity with fewer than K
    images contributes all of them plus repeats drawn at random (each repeat is augmented
    with its own seed). `require_pairs` rejects identities with a single image, which give a
    pair or triplet loss nothing to compare.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, k: int, seed: int = 0, require_pairs: bool = True) -> None:
        super().__init__(seed)
        if k < 2 or batch_size % k:
            raise DataError(f"PK sampling needs K >= 2 dividing the batch size; got K={k}, batch {batch_size}")
        counts = np.bincount(labels)
        small = np.flatnonzero((counts > 0) & (counts < 2))
        if require_pairs and len(small):
            raise DataError(
                f"{len(small)} identities have a single image (e.g. label {small[0]}), but a pair/"
                "triplet loss needs at least two per identity; set data.min_images_per_identity: 2 "
                "to drop them"
            )
        self.by_identity = [np.flatnonzero(labels == c) for c in np.flatnonzero(counts)]
        self.p, self.k = batch_size // k, k
        if len(self.by_identity) < self.p:
            raise DataError(f"PK batch needs {self.p} identities, dataset has {len(self.by_identity)}")

    def __len__(self) -> int:
        return len(self.by_identity) // self.p

    def epoch_batches(self, rng: np.random.Generator) -> list[list[int]]:
        order = rng.permutation(len(self.by_identity))
        batches = []
        for b in range(len(self)):
            batch: list[int] = []
            for ident in order[b * self.p : (b + 1) * self.p]:
                pool = self.by_identity[ident]
                replace = len(pool) < self.k
                batch += rng.choice(pool, self.k, replace=replace).tolist()
            batches.append(batch)
        return batches
