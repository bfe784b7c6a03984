"""Training throughput (images/s) of backbones with an ArcFace head on random 112x112 batches.

Measures the full step the training loop runs (forward, margin head, backward, SGD with
momentum and weight decay); data loading is excluded. Prints a Markdown table.

    python benchmarks/train_throughput.py --threads 2 --batch 64 --steps 5
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from facerec.heads import build_head
from facerec.models import build_backbone


def measure(name: str, size: int, batch: int, steps: int, warmup: int, classes: int, device: str) -> float:
    model = build_backbone(name, 512, size).to(device).train()
    head = build_head("arcface", 512, classes).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    for i in range(warmup + steps):
        if i == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        head(model(x), y).backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["iresnet50", "mobilefacenet"])
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads, device {args.device}\n"
    )
    print("| backbone | input | batch | images/s |")
    print("|---|---|---|---|")
    for name in args.models:
        rate = measure(name, args.size, args.batch, args.steps, args.warmup, args.classes, args.device)
        print(f"| {name} | {args.size}x{args.size} | {args.batch} | {rate:.1f} |")


if __name__ == "__main__":
    main()
