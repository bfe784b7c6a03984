"""Which classes a Partial FC rank uses on a step: every positive plus uniform random negatives.

The chosen set is a uniformly random subset of the non-positive classes (of the size that
fills `keep`), joined with the positives. At a low sample rate it is drawn without touching
every class: integers drawn with replacement, made distinct, positives removed, drawn again
until enough, and a surplus dropped at random - O(k log k) for k sampled classes, whatever the
class count. Uniformity: the procedure treats every non-positive class alike (it is
equivariant under their permutations), so every subset of the final size is equally likely.
When more than half of the free classes are needed that loop would collect coupons for long;
there a random priority per class and a top-k (O(C)) is used, which costs no more than
gathering those rows does.
"""

from __future__ import annotations

import numpy as np
import torch


def sample_classes(num_classes: int, keep: int, positives: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sorted distinct class indices in [0, num_classes): all of `positives` (distinct, any order)
    and uniformly random others up to max(keep, len(positives)) in all (at most num_classes).
    Random draws come from `generator` (a CPU generator: its state is the sampler's state)."""
    keep = min(max(keep, len(positives)), num_classes)
    free = num_classes - len(positives)
    need = keep - len(positives)
    taken = np.sort(positives.cpu().numpy())
    if need == 0:
        chosen = taken
    elif 2 * need > free:
        chosen = np.sort(np.concatenate([taken, _by_priority(num_classes, need, taken, generator)]))
    else:
        chosen = _sorted_union(taken, _by_rejection(num_classes, need, free, taken, generator))
    return torch.from_numpy(chosen).to(positives.device)


# NumPy's sort of integers is several times faster than torch's on the CPU (and torch.isin takes
# seconds on 10^5 values): sets of class indices are sorted NumPy arrays here.
def _by_rejection(num_classes: int, need: int, free: int, taken: np.ndarray, generator: torch.Generator) -> np.ndarray:
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < need:
        missing = need - len(chosen)
        # draws that land on chosen classes are wasted: over-draw by the expected share (+ slack)
        draws = missing + missing * len(chosen) // max(free - len(chosen), 1) + 16
        fresh = torch.randint(0, num_classes, (draws,), generator=generator).numpy()
        chosen = _sorted_union(chosen, fresh[~_members(fresh, taken)])
    if len(chosen) > need:  # drop a uniformly random surplus
        chosen = np.sort(chosen[torch.randperm(len(chosen), generator=generator)[:need].numpy()])
    return chosen


def _sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    merged = np.sort(np.concatenate([a, b]))
    return merged[np.concatenate([[True], merged[1:] != merged[:-1]])]


def _members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values in sorted_set, by binary search."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    found = np.searchsorted(sorted_set, values).clip(max=len(sorted_set) - 1)
    return sorted_set[found] == values


def _by_priority(num_classes: int, need: int, taken: np.ndarray, generator: torch.Generator) -> np.ndarray:
    priority = torch.rand(num_classes, generator=generator)
    priority[torch.from_numpy(taken)] = -1.0  # positives are added by the caller
    return torch.topk(priority, need).indices.numpy()
