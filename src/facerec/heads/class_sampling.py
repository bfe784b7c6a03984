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

import torch


def sample_classes(num_classes: int, keep: int, positives: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sorted distinct class indices in [0, num_classes): all of `positives` (distinct, any order)
    and uniformly random others up to max(keep, len(positives)) in all (at most num_classes)."""
    keep = min(max(keep, len(positives)), num_classes)
    free = num_classes - len(positives)
    need = keep - len(positives)
    if need == 0:
        return positives.sort().values
    if 2 * need > free:
        negatives = _by_priority(num_classes, need, positives, generator)
    else:
        negatives = _by_rejection(num_classes, need, free, positives, generator)
    return torch.cat([positives, negatives.to(positives.device)]).sort().values


def _by_rejection(
    num_classes: int, need: int, free: int, positives: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    taken = positives.cpu().sort().values
    chosen = torch.empty(0, dtype=torch.long)
    while len(chosen) < need:
        missing = need - len(chosen)
        # draws that land on chosen classes are wasted: over-draw by the expected share (+ slack)
        draws = missing + missing * len(chosen) // max(free - len(chosen), 1) + 16
        fresh = torch.randint(0, num_classes, (draws,), generator=generator)
        fresh = fresh[~torch.isin(fresh, taken)]
        chosen = torch.unique(torch.cat([chosen, fresh]))
    if len(chosen) > need:  # drop a uniformly random surplus
        chosen = chosen[torch.randperm(len(chosen), generator=generator)[:need]]
    return chosen


def _by_priority(num_classes: int, need: int, positives: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    priority = torch.rand(num_classes, generator=generator)
    priority[positives.cpu()] = -1.0  # positives are added by the caller
    return torch.topk(priority, need).indices
