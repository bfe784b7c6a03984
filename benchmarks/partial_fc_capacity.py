"""How many classes train on this machine with N processes: Partial FC steps over C classes.

Run under torchrun; each rank holds C / N class centers (fp32, 512-d) with their momentum and
runs a few full steps (all-gather of the batch, sampled softmax, backward, sparse update) on
embeddings from a small linear layer, so only the class layer's memory matters. Rank 0 prints
the step time and every rank's peak resident memory.

    torchrun --standalone --nproc_per_node 2 benchmarks/partial_fc_capacity.py --classes 4000000
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.distributed as dist

from facerec.distributed import init_from_env
from facerec.heads.partial_fc import PartialFC


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--rate", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=128, help="per process")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    ctx = init_from_env(torch.device("cpu"))
    layer = torch.nn.Linear(64, 512)
    head = PartialFC(512, args.classes, sample_rate=args.rate, scale=64.0, m2=0.5)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(ctx.rank)
    times = []
    for _ in range(args.steps):
        x = torch.randn(args.batch, 64, generator=gen)
        y = torch.randint(0, args.classes, (args.batch,), generator=gen)
        start = time.perf_counter()
        opt.zero_grad()
        head(layer(x), y).backward()
        opt.step()
        head.sparse_step(0.1, 0.9, 5e-4)
        times.append(time.perf_counter() - start)
    peak = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20])
    peaks = [torch.zeros(1) for _ in range(ctx.world_size)]
    dist.all_gather(peaks, peak)
    if ctx.is_main:
        gb = ", ".join(f"{float(v):.2f}" for v in peaks)
        print(
            f"classes {args.classes:,} on {ctx.world_size} processes ({head.num_local:,} per rank), "
            f"rate {args.rate}: last step {times[-1]:.2f} s, peak RSS per rank (GB): {gb}"
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
