"""Partial FC: one training step with the sparse update against the dense one, and memory.

Each configuration runs in a fresh subprocess (so peak memory is its own): a small backbone
(lowres_irse8, widths 16-128, 32x32 input, batch 128, 512-d embedding), a Partial FC head
over C classes with sample rate r, SGD momentum 0.9 and weight decay 5e-4.
- sparse: the optimizer holds the backbone; the sampled class rows get `sparse_step` (which
  first catches them up exactly on the steps they were skipped).
- dense: the optimizer also holds the class matrix, receives a dense gradient and rewrites
  every row (momentum + weight decay), as arcface_torch's PartialFC_V2 does.
Reported: median step time over the timed steps, peak resident memory of the process and the
memory of the class layer with its optimizer state (weight + momentum [+ dense gradient]).

    python benchmarks/partial_fc_step.py --classes 100000 1000000 --rates 0.1 --threads 2 --steps 10 --repeats 2
    python benchmarks/partial_fc_step.py --memory --classes 100000 1000000 2000000 --rates 0.1 1.0
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def one(
    classes: int, rate: float, update: str, steps: int, threads: int, batch: int, head_only: bool, emb: int = 512
) -> dict:
    from facerec.heads.partial_fc import PartialFC
    from facerec.models import build_backbone

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    backbone = build_backbone("lowres_irse8", emb, 32, {"widths": [16, 32, 64, 128], "se": False})
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    head = PartialFC(emb, classes, sample_rate=rate, scale=64.0, m2=0.5, update=update)
    params = [] if head_only else list(backbone.parameters())
    params += list(head.parameters()) if update == "dense" else []
    params = params or [torch.zeros(1, requires_grad=True)]  # sparse, class layer only: nothing else to step
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    if head_only:  # the class layer alone: fixed embeddings stand in for the backbone's output
        feats = torch.randn(batch, emb, requires_grad=True)
        backbone = lambda _: feats  # noqa: E731
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, classes, (batch,))
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        head(backbone(x), y).backward()
        opt.step()
        head.sparse_step(0.1, 0.9, 5e-4)
        if i >= 2:  # two warm-up steps (the dense momentum buffer is allocated on the first)
            times.append(time.perf_counter() - start)
    # centers + momentum (+ the dense gradient); sparse also keeps each row's last update step
    layer_bytes = head.weight.numel() * 4 * (2 if update == "sparse" else 3) + (
        8 * classes if update == "sparse" else 0
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "classes": classes,
        "rate": rate,
        "update": update,
        "step_s": statistics.median(times),
        "steps_s": [round(t, 3) for t in times],
        "peak_rss_gb": peak / 2**20,
        "head_rss_gb": (peak - rss_before) / 2**20,
        "layer_gb": layer_bytes / 2**30,
    }


def run(classes: int, rate: float, update: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--one",
        str(classes),
        str(rate),
        update,
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        "--batch",
        str(args.batch),
    ] + (["--head-only"] if args.head_only else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:  # e.g. killed by the kernel when the configuration does not fit in memory
        why = "out of memory (killed)" if out.returncode == -9 else f"failed ({out.stderr.strip().splitlines()[-1]})"
        return {"classes": classes, "rate": rate, "update": update, "failed": why}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_repeated(classes: int, rate: float, update: str, args: argparse.Namespace) -> dict:
    """`--repeats` processes of one configuration: the median over all their timed steps, and
    the spread of the per-process medians."""
    runs = [run(classes, rate, update, args) for _ in range(args.repeats)]
    failed = [r for r in runs if "failed" in r]
    if failed:
        return failed[0]
    result = dict(runs[0])
    result["step_s"] = statistics.median([t for r in runs for t in r["steps_s"]])
    result["process_medians"] = [r["step_s"] for r in runs]
    result["peak_rss_gb"] = max(r["peak_rss_gb"] for r in runs)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--rates", type=float, nargs="+", default=[0.1])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=1, help="separate processes per configuration")
    p.add_argument("--head-only", action="store_true", help="time the class layer alone (no backbone)")
    p.add_argument("--memory", action="store_true", help="memory table")
    p.add_argument("--one", nargs=3, metavar=("C", "R", "UPDATE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        c, r, update = args.one
        print(json.dumps(one(int(c), float(r), update, args.steps, args.threads, args.batch, args.head_only)))
        return
    what = "class layer only" if args.head_only else "backbone lowres_irse8 16-128 at 32x32 + class layer"
    print(
        f"torch {torch.__version__}, {args.threads} threads, one process holding all classes, batch {args.batch}, "
        f"{what}\n"
    )
    if args.memory:
        print("| classes | sample rate | update | class layer + optimizer state (GB) | peak RSS of the process (GB) |")
        print("|---|---|---|---|---|")
    else:
        print("| classes | sample rate | sparse step (s) | dense step (s) | speed-up | per-process medians (s) |")
        print("|---|---|---|---|---|---|")
    for c in args.classes:
        for r in args.rates:
            res = {u: run_repeated(c, r, u, args) for u in ("sparse", "dense")}
            if any("failed" in v for v in res.values()):
                for u, v in res.items():
                    print(f"| {c:,} | {r} | {u} | {v.get('failed', 'ok')} | |")
            elif args.memory:
                for u, v in res.items():
                    print(f"| {c:,} | {r} | {u} | {v['layer_gb']:.2f} | {v['peak_rss_gb']:.2f} |")
            else:
                s, d = res["sparse"]["step_s"], res["dense"]["step_s"]
                spread = "; ".join(
                    f"{u} " + ", ".join(f"{m:.2f}" for m in res[u]["process_medians"]) for u in ("sparse", "dense")
                )
                print(f"| {c:,} | {r} | {s:.3f} | {d:.3f} | {d / s:.1f}x | {spread} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
