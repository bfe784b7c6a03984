"""What choosing a step's classes costs at millions of local classes: before and now.

`priority` is how Partial FC sampled until this benchmark's commit (and how arcface_torch's
PartialFC_V2 samples): a random number per local class, the positives raised above all, a
top-k, a sort, and a map from class to column filled over all classes - O(C) per step.
`rejection` is `facerec.heads.class_sampling.sample_classes` plus a binary search of each
label's column - O(k log k) for k sampled classes. Median wall and CPU time of `--repeats`
calls after one warm-up, batch of `--batch` labels, one process holding all classes.

    python benchmarks/partial_fc_sampling.py --classes 1000000 5000000 --rate 0.1 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from facerec.heads.class_sampling import sample_classes


def by_priority(num: int, keep: int, labels: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    priority = torch.rand(num, generator=g)
    priority[labels] = 2.0
    index = torch.topk(priority, max(keep, int((priority > 1.0).sum()))).indices.sort().values
    position = torch.full((num,), -1, dtype=torch.long)
    position[index] = torch.arange(len(index))
    return index, position[labels]


def by_rejection(num: int, keep: int, labels: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    index = sample_classes(num, keep, torch.unique(labels), g)
    return index, torch.searchsorted(index, labels)


METHODS: dict[str, Callable[[int, int, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]] = {
    "priority": by_priority,
    "rejection": by_rejection,
}


def seconds(method: Callable, num: int, keep: int, labels: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of one call (CPU time: this process's, less dependent on the
    other processes of a shared machine)."""
    g = torch.Generator().manual_seed(0)
    method(num, keep, labels, g)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        index, column = method(num, keep, labels, g)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        assert torch.equal(index[column], labels) and len(index) == keep
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    p.add_argument("--rate", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/partial_fc_sampling.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print("| local classes | sampled | priority + top-k: wall, CPU (s) | rejection: wall, CPU (s) | CPU ratio |")
    print("|---|---|---|---|---|")
    for num in args.classes:
        keep = math.ceil(args.rate * num)
        labels = torch.randint(0, num, (args.batch,), generator=torch.Generator().manual_seed(1))
        row = {"classes": num, "keep": keep}
        row.update({name: seconds(method, num, keep, labels, args.repeats) for name, method in METHODS.items()})
        rows.append(row)
        (bw, bc), (nw, nc) = row["priority"], row["rejection"]
        print(f"| {num:,} | {keep:,} | {bw:.3f}, {bc:.3f} | {nw:.3f}, {nc:.3f} | {bc / nc:.1f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"config": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
