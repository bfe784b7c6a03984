"""Exact lazy SGD for rows that receive a gradient only on some steps (sampled class centers).

On a step where a row gets no gradient, SGD with momentum mu, weight decay wd and learning rate
lr still moves it; its state (w, buf) goes through a linear map that depends on the step only:

    plain:     buf' = mu buf + wd w             w' = w - lr buf'
               A = [[1 - lr wd,           -lr mu ],
                    [wd,                   mu    ]]
    Nesterov:  buf' = mu buf + wd w             w' = w - lr (wd w + mu buf')
               A = [[1 - lr wd (1 + mu),  -lr mu^2],
                    [wd,                   mu     ]]

So a row last updated at step a and sampled again at step b catches up exactly with the product
A_{b-1} ... A_{a+1} applied to (w, buf), and then takes its ordinary step b. `StepHistory` keeps
the per-step maps in a segment tree of products over aligned power-of-two blocks of steps, so any
range product costs O(log T) 2x2 products (no inverses, which would be unstable since
det A = mu), vectorised over all rows that catch up at once.

Products are written out element by element (no batched matmul, no fused multiply-add) so that a
range always gives bit-identical coefficients, whether the tree was built step by step or
rebuilt at once on resume.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_FIELDS = 4  # (lr, momentum, weight_decay, nesterov) per step


def transition_entries(lr: float, momentum: float, weight_decay: float, nesterov: bool = False) -> tuple[float, ...]:
    """(a, b, c, d) of the 2x2 map [[a, b], [c, d]] of one step without gradient on (w, buf)."""
    if nesterov:
        return (1 - lr * weight_decay * (1 + momentum), -lr * momentum * momentum, weight_decay, momentum)
    return (1 - lr * weight_decay, -lr * momentum, weight_decay, momentum)


def transition(lr: float, momentum: float, weight_decay: float, nesterov: bool = False) -> torch.Tensor:
    return torch.tensor(transition_entries(lr, momentum, weight_decay, nesterov), dtype=torch.float64).reshape(2, 2)


def _compose(x: Any, y: Any) -> tuple[Any, Any, Any, Any]:
    """x @ y on (a, b, c, d) entries: Python floats, NumPy or torch arrays alike, always with the
    same operations in the same order (no fused multiply-add), hence bit-identical results."""
    xa, xb, xc, xd = x
    ya, yb, yc, yd = y
    return (xa * ya + xb * yc, xa * yb + xb * yd, xc * ya + xd * yc, xc * yb + xd * yd)


def _floor_log2(x: torch.Tensor) -> torch.Tensor:
    """floor(log2(x)) for positive int64 tensors, exact."""
    j = torch.log2(x.double()).floor().long()
    j = torch.where((1 << j) > x, j - 1, j)
    return torch.where((1 << (j + 1)) <= x, j + 1, j)


class StepHistory:
    """The per-step gradient-free maps of an SGD run and fast products over ranges of steps."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, float, float, float]] = []
        self._build(1)

    def __len__(self) -> int:
        return len(self.steps)

    def _build(self, capacity: int) -> None:
        """Lay out the tree for `capacity` steps and fill it, level by level, from `self.steps`."""
        self._capacity, self._levels = capacity, capacity.bit_length()
        self._offsets = [sum(capacity >> i for i in range(j)) for j in range(self._levels)]
        self._tree = np.empty((2 * capacity, 4), dtype=np.float64)  # rows (a, b, c, d)
        n = len(self.steps)
        if n:
            self._tree[:n] = [transition_entries(lr, m, wd, bool(nv)) for lr, m, wd, nv in self.steps]
        for level in range(1, self._levels):
            count, below = n >> level, self._offsets[level - 1]
            later = self._tree[below + 1 : below + 2 * count : 2].T
            earlier = self._tree[below : below + 2 * count : 2].T
            self._tree[self._offsets[level] : self._offsets[level] + count] = np.stack(_compose(later, earlier), 1)

    def append(self, lr: float, momentum: float, weight_decay: float, nesterov: bool = False) -> None:
        t = len(self.steps)
        self.steps.append((float(lr), float(momentum), float(weight_decay), float(nesterov)))
        if t == self._capacity:
            self._build(2 * self._capacity)
            return
        self._tree[t] = transition_entries(float(lr), float(momentum), float(weight_decay), nesterov)
        # every block that step t completes: level j, block k covers steps [k 2^j, (k+1) 2^j)
        level, index = 1, t
        while level < self._levels and index % 2 == 1:
            below, index = self._offsets[level - 1], index // 2
            later, earlier = self._tree[below + 2 * index + 1].tolist(), self._tree[below + 2 * index].tolist()
            self._tree[self._offsets[level] + index] = _compose(later, earlier)
            level += 1

    def product(self, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """A_{end-1} ... A_{start} for each pair of the int64 tensors start <= end (n,): (n, 2, 2).
        An empty range gives the identity."""
        if (start > end).any() or (end > len(self)).any() or (start < 0).any():
            raise ValueError("step ranges must satisfy 0 <= start <= end <= number of steps")
        tree = torch.from_numpy(self._tree)
        out = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64).repeat(len(start), 1)
        pos = start.clone()
        offsets = torch.tensor(self._offsets, dtype=torch.long)
        active = torch.nonzero(pos < end).squeeze(1)
        while len(active):
            p = pos[active]
            fit = _floor_log2(end[active] - p)  # the largest block that fits in what is left
            aligned = torch.where(p > 0, _floor_log2(p & -p), torch.full_like(p, self._levels - 1))
            level = torch.minimum(fit, aligned)
            block = tree[offsets[level] + (p >> level)]
            out[active] = torch.stack(_compose(block.T, out[active].T), 1)  # later steps multiply from the left
            pos[active] = p + (1 << level)
            active = active[pos[active] < end[active]]
        return out.reshape(-1, 2, 2)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": torch.tensor(self.steps, dtype=torch.float64).reshape(-1, _FIELDS)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = [tuple(row) for row in state["steps"].tolist()]
        capacity = 1
        while capacity < len(self.steps):
            capacity *= 2
        self._build(capacity)
