"""Partial FC at scale: training steps over C classes with a chosen class-row storage.

A small backbone (lowres_irse8, widths 16-128, 32x32 random images, 512-d embedding, SGD
momentum 0.9 and weight decay 5e-4) under a Partial FC head (ArcFace m2 0.5, s 64) over
`--classes` classes at sample rate `--rate`, its rows stored as `--dtype` (fp32 | bf16 | fp16)
with or without momentum, in memory or in memory-mapped files under `--directory`.
One process, or several under torchrun (gloo on the CPU, nccl on CUDA: the same script runs
a few steps at 10M classes on a GPU machine). Reported (stdout, a JSON report and a PNG of the
step times in `--out`): set-up time, median / mean / 90th percentile step time, the sampler's
share, peak resident memory per process (VmHWM, and the largest anonymous and file-backed
parts seen after a step: with the mmap backend the file part is page cache the OS may drop),
CUDA memory, disk used by the files, and optionally the time and size of one checkpoint.

    python benchmarks/partial_fc_scale.py --classes 10000000 --dtype bf16 --no-momentum \\
        --backend mmap --directory data/pfc_scale --steps 100 --threads 2
    torchrun --standalone --nproc_per_node 1 benchmarks/partial_fc_scale.py --classes 10000000 \\
        --device cuda --dtype bf16 --no-momentum --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from facerec.core.device import pick_device
from facerec.core.plots import pyplot, save_figure
from facerec.distributed import DistContext, init_from_env
from facerec.errors import FacerecError
from facerec.heads.partial_fc import PartialFC
from facerec.models import build_backbone


def memory_kb() -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile of this process (kB), from /proc/self/status."""
    wanted = ("VmHWM", "VmRSS", "RssAnon", "RssFile")
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            out[key] = int(value.split()[0])
    return out


def disk_bytes(directory: str | None) -> int:
    """Bytes the files under `directory` occupy on disk (allocated blocks: sparse files count
    what was written)."""
    if not directory or not Path(directory).is_dir():
        return 0
    return sum(p.stat().st_blocks * 512 for p in Path(directory).rglob("*") if p.is_file())


def build(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, PartialFC, float]:
    torch.manual_seed(0)
    backbone = build_backbone("lowres_irse8", args.emb, 32, {"widths": [16, 32, 64, 128], "se": False}).to(device)
    storage = {
        "dtype": args.dtype,
        "momentum": not args.no_momentum,
        "rounding": args.rounding,
        "backend": args.backend,
        "directory": args.directory,
    }
    start = time.perf_counter()
    head = PartialFC(args.emb, args.classes, sample_rate=args.rate, scale=64.0, m2=0.5, storage=storage).to(device)
    return backbone, head, time.perf_counter() - start


def sampler_seconds(head: PartialFC, labels: torch.Tensor, repeats: int = 5) -> float:
    """Median time of the per-step sampling alone (on a copy of the sampler's state)."""
    state = head.sampler.get_state()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        head.sample(labels)
        times.append(time.perf_counter() - start)
    head.sampler.set_state(state)
    return statistics.median(times)


def train(args: argparse.Namespace, ctx: DistContext, device: torch.device) -> dict:
    load_start = os.getloadavg()[0]  # other processes on the machine slow every step: say how many
    backbone, head, setup_s = build(args, device)
    opt = torch.optim.SGD(backbone.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(ctx.rank)
    images = torch.randn(args.batch, 3, 32, 32, generator=gen).to(device)
    labels = torch.randint(0, args.classes, (args.batch * ctx.world_size,), generator=gen).to(device)
    sample_s = sampler_seconds(head, labels)
    times, cpu, peak_anon, peak_file = [], [], 0, 0
    bar = tqdm(range(args.warmup + args.steps), desc="partial fc steps", unit="step", disable=not ctx.is_main)
    for i in bar:
        y = torch.randint(0, args.classes, (args.batch,), generator=gen).to(device)
        synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        head(backbone(images), y).backward()
        opt.step()
        head.sparse_step(0.1, 0.9, 5e-4)
        synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)  # CPU seconds of this process: less load-dependent
            if ctx.is_main and len(times) % 10 == 0:  # a partial record survives an interrupted run
                partial = {"steps_done": len(times), "step_s": times, "cpu_s": cpu, "load": os.getloadavg()[0]}
                Path(args.out).mkdir(parents=True, exist_ok=True)
                (Path(args.out) / "partial.json").write_text(json.dumps(partial))
        mem = memory_kb()
        peak_anon, peak_file = max(peak_anon, mem["RssAnon"]), max(peak_file, mem["RssFile"])
        bar.set_postfix(step_s=f"{times[-1]:.2f}" if times else "warm-up", anon_gb=f"{mem['RssAnon'] / 2**20:.1f}")
    result = {
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "setup_s": setup_s,
        "sample_s": sample_s,
        "step_s": times,
        "cpu_s": cpu,
        "peak_rss_gb": memory_kb()["VmHWM"] / 2**20,
        "peak_anon_gb": peak_anon / 2**20,
        "peak_file_gb": peak_file / 2**20,
        "cuda_peak_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "disk_gb": disk_bytes(args.directory) / 2**30 if ctx.is_main else None,
    }
    if args.checkpoint:
        result.update(checkpoint(head, args, ctx))
    return result


def checkpoint(head: PartialFC, args: argparse.Namespace, ctx: DistContext) -> dict:
    """One save of the head's state (as a training checkpoint writes it), timed and sized, then removed."""
    path = Path(args.checkpoint) / f"head.rank{ctx.rank}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.save(head.state_dict(), path)
    seconds, size = time.perf_counter() - start, path.stat().st_size
    path.unlink()
    return {"checkpoint_s": seconds, "checkpoint_gb": size / 2**30}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gather_results(result: dict, ctx: DistContext, device: torch.device) -> list[dict]:
    if ctx.world_size == 1:
        return [result]
    out: list[dict | None] = [None] * ctx.world_size
    dist.all_gather_object(out, result)
    return [r for r in out if r is not None]


def summary(args: argparse.Namespace, ranks: list[dict], ctx: DistContext, device: torch.device) -> dict:
    times = ranks[0]["step_s"]
    return {
        "config": {**vars(args), "world_size": ctx.world_size, "device": str(device), "torch": torch.__version__},
        "per_rank_classes": args.classes // ctx.world_size,
        "setup_s": max(r["setup_s"] for r in ranks),
        "sample_s": ranks[0]["sample_s"],
        "step_median_s": statistics.median(times),
        "step_mean_s": statistics.fmean(times),
        "step_p90_s": sorted(times)[int(0.9 * (len(times) - 1))],
        "cpu_median_s": statistics.median(ranks[0]["cpu_s"]),
        "ranks": ranks,
    }


def report(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result, indent=2))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for rank, r in enumerate(result["ranks"]):
        ax.plot(range(1, len(r["step_s"]) + 1), r["step_s"], label=f"rank {rank}", lw=1)
    c = result["config"]
    ax.set(xlabel="step (after warm-up)", ylabel="step time (s)")
    ax.set_title(f"Partial FC, {c['classes']:,} classes, {c['dtype']} {c['backend']}, rate {c['rate']}", fontsize=10)
    ax.legend()
    save_figure(fig, out / "step_times.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--rate", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=128, help="per process")
    p.add_argument("--emb", type=int, default=512)
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--rounding", default="stochastic", choices=["nearest", "stochastic"])
    p.add_argument("--no-momentum", action="store_true", help="the class layer keeps no momentum rows")
    p.add_argument("--backend", default="memory", choices=["memory", "mmap"])
    p.add_argument("--directory", help="where the mmap backend keeps its files (removed at the end)")
    p.add_argument("--keep-files", action="store_true", help="leave the mmap files in --directory")
    p.add_argument("--checkpoint", help="directory for one timed torch.save of the head state (removed after)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch's default)")
    p.add_argument("--out", default="runs/partial_fc_scale", help="report.json and step_times.png")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:  # e.g. --device cuda on a machine without CUDA: say so, before any process group or file
        device = pick_device(args.device)
    except FacerecError as exc:
        sys.exit(f"partial_fc_scale: {exc}")
    ctx = init_from_env(device)
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    try:
        ranks = gather_results(train(args, ctx, device), ctx, device)
        if ctx.is_main:
            result = summary(args, ranks, ctx, device)
            report(Path(args.out), result)
            print(json.dumps({k: v for k, v in result.items() if k != "ranks"}, indent=1))
            for rank, r in enumerate(ranks):
                print(f"rank {rank}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items() if isinstance(v, float)))
            sys.stdout.flush()
    finally:
        if args.directory and not args.keep_files and ctx.is_main:
            shutil.rmtree(args.directory, ignore_errors=True)
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
