"""Training throughput (images/s) of backbones with an ArcFace head on random batches.

Measures the full step the training loop runs (forward under autocast at `--precision`, margin
head in fp32, backward, SGD with momentum and weight decay); data loading is excluded. Prints a
Markdown table with, per backbone: images/s, the model FLOPs of one training step per image
of the backbone (3x the forward's multiply-adds x 2, counted by torch's FLOP counter; the
head's 512 x classes product is left out), the achieved TFLOP/s and
its share of `--peak-tflops` (the device's measured dense matrix rate), and on CUDA the peak
memory allocated. `--json` writes the rows too.

    python benchmarks/train_throughput.py --threads 2 --batch 64 --steps 5
    python benchmarks/train_throughput.py --device cuda --precision bf16 --batch 256 --steps 50 \\
        --warmup 10 --channels-last --peak-tflops 790
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from facerec.heads import build_head
from facerec.models import build_backbone

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def forward_flops(name: str, size: int) -> int:
    """FLOPs (2 per multiply-add) of one image's forward pass, counted on the CPU."""
    model = build_backbone(name, 512, size).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return int(counter.get_total_flops())


def measure(args: argparse.Namespace, name: str) -> dict:
    device, dtype = args.device, DTYPES[args.precision]
    model = build_backbone(name, 512, args.size).to(device).train()
    head = build_head("arcface", 512, args.classes).to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device).to(memory_format=fmt)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    cast = torch.autocast(torch.device(device).type, dtype=dtype) if dtype else contextlib.nullcontext()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync(device)
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with cast:
            emb = model(x)
        head(emb.float(), y).backward()
        opt.step()
    sync(device)
    rate = args.steps * args.batch / (time.perf_counter() - start)
    step_flops = 3 * forward_flops(name, args.size)  # backward ~ twice the forward
    row = {
        "backbone": name,
        "input": args.size,
        "batch": args.batch,
        "precision": args.precision,
        "images_per_s": rate,
        "gflops_per_image": step_flops / 1e9,
        "tflops": rate * step_flops / 1e12,
    }
    if args.peak_tflops:
        row["share_of_peak"] = row["tflops"] / args.peak_tflops
    if device.startswith("cuda"):
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def machine(args: argparse.Namespace) -> str:
    where = platform.processor() or platform.machine()
    if args.device.startswith("cuda"):
        where = torch.cuda.get_device_name()
    return f"{where}, torch {torch.__version__}, {args.threads} CPU threads, device {args.device}"


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
    p.add_argument("--precision", default="fp32", choices=sorted(DTYPES), help="fp16 runs without loss scaling")
    p.add_argument("--channels-last", action="store_true", help="NHWC tensors (faster convolutions on GPUs)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the device's dense matrix rate, for the share")
    p.add_argument("--json", help="write the rows here too")
    args = p.parse_args()
    if args.steps < 1:
        p.error("--steps must be at least 1")
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    print(f"machine: {machine(args)}\n")
    columns = ["backbone", "input", "batch", "precision", "images/s", "GFLOP/image (step)", "TFLOP/s"]
    print("| " + " | ".join([*columns, "share of peak", "peak memory"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.models:
        row = measure(args, name)
        rows.append(row)
        share = f"{row['share_of_peak']:.1%}" if "share_of_peak" in row else "-"
        memory = f"{row['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in row else "-"
        print(
            f"| {name} | {args.size}x{args.size} | {args.batch} | {args.precision} | {row['images_per_s']:.1f} | "
            f"{row['gflops_per_image']:.3f} | {row['tflops']:.2f} | {share} | {memory} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
