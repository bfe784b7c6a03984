"""facerec's Partial FC side by side with arcface_torch's PartialFC_V2, on the same tensors.

arcface_torch (deepinsight/insightface, `recognition/arcface_torch`) is imported, unmodified,
from the checkout given by `--arcface-torch PATH`: its `partial_fc_v2.PartialFC_V2` and
`losses.CombinedMarginLoss`, built as its train_v2.py builds them (s 64, margin m1 m2 m3,
interclass filtering off, fp16 off) and stepped by torch.optim.SGD with train_v2's head
settings (lr 0.1, momentum 0.9, weight decay 5e-4): the optimizer holds the whole class
matrix, gets a dense gradient and rewrites every row. facerec's `PartialFC` (sparse update,
fp32 rows with momentum) gets the same lr, momentum and weight decay through `sparse_step`.
Nothing of arcface_torch is copied here; its two files' SHA-256 go into the report.

CPU shim (applied only in the child processes that run their code, never in facerec): their
module calls `.cuda()` unconditionally on tensors it creates (the sampled index, the gather
buffers), so `torch.Tensor.cuda` and `torch.nn.Module.cuda` are replaced by the identity; it
needs an initialized process group (`distributed.get_rank`, `all_gather`, `all_reduce`,
`reduce`), so a single-process gloo group is created (facerec's process gets the same group,
which its head skips at world size 1). `torch.cuda.amp.autocast(False)` runs as it is on a CPU
build. Nothing else of theirs is touched.

1. Correctness (`--check-classes`, default 20,000 classes): one process builds both heads
   with the same initial class matrix, feeds them the same embeddings (a leaf tensor requiring
   grad) and labels for three steps, at sample rate 1.0 and at `--rate` with facerec forced
   to use the classes their sampler drew, for ArcFace (1, 0.5, 0) and CosFace (1, 0, 0.4).
   Compared: the loss, the embeddings' gradient and, after the steps, every class row (facerec
   synchronized), each also against a float64 autograd reference of the margin softmax. Their
   ArcFace applies the angular margin under no_grad (its backward treats cos(theta + m) as
   cos(theta)), so its gradient is compared with that straight-through reference and facerec's
   with the exact one.
2. Speed and memory: `--repeats` rounds of one process per implementation, alternating
   (arcface_torch, facerec, arcface_torch, ...), each `--warmup` + `--steps` steps of
   forward + backward + optimizer step over `--classes` classes, with `--threads` torch threads
   (OMP_NUM_THREADS too). Per step: new embeddings and labels from a fixed seed, identical in
   both. Reported: median wall and CPU time per step, peak resident memory (VmHWM), the ratio
   arcface_torch / facerec of the medians over all timed steps and its spread over the rounds.
   `--backbone` puts the small lowres_irse8 (16-128, 32x32) in front instead of a leaf tensor.

    python benchmarks/partial_fc_vs_arcface_torch.py --arcface-torch data/insightface/recognition/arcface_torch \\
        --classes 1000000 --rate 0.1 --batch 128 --steps 10 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from facerec.core.plots import pyplot, save_figure
from facerec.heads.partial_fc import PartialFC

IMPLEMENTATIONS = ("arcface_torch", "facerec")
THEIR_FILES = ("partial_fc_v2.py", "losses.py")
LR, MOMENTUM, WEIGHT_DECAY, SCALE = 0.1, 0.9, 5e-4, 64.0  # train_v2.py with configs/base.py
MARGINS = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.4)}


# ---- their code: loaded from the user's checkout, run on the CPU -------------------------------
def check_checkout(path: Path) -> dict[str, str]:
    """SHA-256 of their two files; exits with a message when the checkout lacks them."""
    missing = [name for name in THEIR_FILES if not (path / name).is_file()]
    if missing:
        sys.exit(
            f"--arcface-torch {path}: no {', '.join(missing)} there (give insightface's recognition/arcface_torch)"
        )
    return {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in THEIR_FILES}


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"arcface_torch_{name}", path / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_shim() -> None:
    """What their module needs from CUDA and torch.distributed, on a CPU in one process."""
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    if not dist.is_initialized():
        store = Path(tempfile.mkdtemp(prefix="pfc_vs_arcface_")) / "store"
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)


def their_head(path: Path, classes: int, emb: int, rate: float, margin: tuple[float, float, float]) -> Any:
    pfc, losses = load_module(path, "partial_fc_v2"), load_module(path, "losses")
    margin_loss = losses.CombinedMarginLoss(SCALE, *margin, 0)  # as train_v2.py builds it
    return pfc.PartialFC_V2(margin_loss, emb, classes, rate, False).train()


def our_head(classes: int, emb: int, rate: float, margin: tuple[float, float, float]) -> PartialFC:
    m1, m2, m3 = margin
    return PartialFC(emb, classes, sample_rate=rate, scale=SCALE, m1=m1, m2=m2, m3=m3).train()


def use_their_classes(head: PartialFC, index: torch.Tensor) -> None:
    """Make facerec's head use the classes `index` (sorted) on its next forward pass, in place of
    its own draw: the targets are located the way `PartialFC.sample` locates them (one rank)."""
    head.sample = lambda labels: (index, torch.searchsorted(index, labels))  # type: ignore[method-assign]


# ---- 1. correctness on the same tensors --------------------------------------------------------
def reference(
    emb: torch.Tensor,
    labels: torch.Tensor,
    rows: torch.Tensor,
    margin: tuple[float, float, float],
    straight_through: bool,
) -> tuple[float, torch.Tensor]:
    """Loss and embedding gradient of the margin softmax in float64 by plain autograd over the
    sampled rows (labels: columns among them). straight_through: the margin's derivative taken
    as 1 (the forward value is the same)."""
    m1, m2, m3 = margin
    e = emb.detach().double().requires_grad_()
    cos = F.normalize(e) @ F.normalize(rows.double()).t()
    target = cos.gather(1, labels[:, None]).squeeze(1)
    psi = torch.cos(m1 * torch.arccos(target.clamp(-1, 1)) + m2) - m3
    if straight_through:
        psi = target + (psi - target).detach()
    one_hot = F.one_hot(labels, cos.shape[1]).bool()
    logits = torch.where(one_hot, psi[:, None], cos) * SCALE
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    return loss.item(), e.grad


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def check_one(path: Path, classes: int, emb: int, rate: float, margin_name: str, steps: int = 3) -> dict:
    margin = MARGINS[margin_name]
    torch.manual_seed(1)
    theirs = their_head(path, classes, emb, rate, margin)
    ours = our_head(classes, emb, rate, margin)
    ours.rows.weight.copy_(theirs.weight.detach())  # the same initial class matrix
    opt = torch.optim.SGD(theirs.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    gen = torch.Generator().manual_seed(2)
    rows = []
    for step in range(steps):
        x = torch.randn(128, emb, generator=gen)
        y = torch.randint(0, classes, (128,), generator=gen)
        start_weight = theirs.weight.detach().clone()
        our_start = synchronized_copy(ours).weight  # ArcFace: the two heads' rows part after step 1
        e_theirs, e_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
        opt.zero_grad(set_to_none=True)
        loss_theirs = theirs(e_theirs, y.clone())
        loss_theirs.backward()
        opt.step()
        index = theirs.weight_index if rate < 1 else torch.arange(classes)
        use_their_classes(ours, index)
        loss_ours = ours(e_ours, y.clone())
        loss_ours.backward()
        ours.sparse_step(LR, MOMENTUM, WEIGHT_DECAY)
        cols = torch.searchsorted(index, y)
        ref_loss, their_ref = reference(x, cols, start_weight[index], margin, straight_through=margin_name == "arcface")
        _, ref_exact = reference(x, cols, our_start[index], margin, straight_through=False)
        rows.append(
            {
                "step": step + 1,
                "loss_arcface_torch": loss_theirs.item(),
                "loss_facerec": loss_ours.item(),
                "loss_float64": ref_loss,
                "grad_rel_diff_arcface_torch_vs_facerec": relative(e_theirs.grad, e_ours.grad),
                "grad_rel_diff_arcface_torch_vs_float64": relative(e_theirs.grad, their_ref),
                "grad_rel_diff_facerec_vs_float64_exact": relative(e_ours.grad, ref_exact),
            }
        )
    ours.synchronize()
    weight_diff = relative(ours.weight, theirs.weight.detach())
    return {"rate": rate, "margin": margin_name, "classes": classes, "steps": rows, "weight_rel_diff": weight_diff}


def synchronized_copy(head: PartialFC) -> PartialFC:
    """A copy of the head with every row brought up to date (the head itself is left as it is, so
    its own catch-up at the next read is what gets tested)."""
    twin = copy.deepcopy(head)
    twin.synchronize()
    return twin


def check(path: Path, classes: int, emb: int, rate: float) -> list[dict]:
    cpu_shim()
    return [check_one(path, classes, emb, r, m) for m in MARGINS for r in sorted({1.0, rate})]


# ---- 2. speed and memory, one implementation per process ---------------------------------------
def vm_hwm_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def small_backbone(emb: int) -> torch.nn.Module:
    from facerec.models import build_backbone

    return build_backbone("lowres_irse8", emb, 32, {"widths": [16, 32, 64, 128], "se": False})


def time_one(impl: str, args: argparse.Namespace) -> dict:
    """One process: build `impl`'s head, run warm-up + timed steps, report times and memory."""
    cpu_shim()  # both processes get the same process group; only arcface_torch needs the rest
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = small_backbone(args.emb) if args.backbone else None
    start = time.perf_counter()
    if impl == "arcface_torch":
        head = their_head(Path(args.arcface_torch), args.classes, args.emb, args.rate, MARGINS[args.margin])
        params = [{"params": head.parameters()}]
    else:
        head = our_head(args.classes, args.emb, args.rate, MARGINS[args.margin])
        params = []
    if backbone is not None:  # train_v2's order: backbone first, the class layer last
        params.insert(0, {"params": backbone.parameters()})
    opt = torch.optim.SGD(
        params or [torch.zeros(1, requires_grad=True)], lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )
    setup_s, rss_setup = time.perf_counter() - start, vm_hwm_gb()
    gen = torch.Generator().manual_seed(3)
    times, cpu = [], []
    for i in range(args.warmup + args.steps):
        x = torch.randn(args.batch, *((3, 32, 32) if backbone is not None else (args.emb,)), generator=gen)
        y = torch.randint(0, args.classes, (args.batch,), generator=gen)
        x.requires_grad_(backbone is None)  # the embeddings as a leaf: their gradient is computed
        wall, proc = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        head(backbone(x) if backbone is not None else x, y).backward()
        opt.step()
        if impl == "facerec":
            head.sparse_step(LR, MOMENTUM, WEIGHT_DECAY)
        if i >= args.warmup:  # warm-up: their momentum buffer and our row buffers are allocated then
            times.append(time.perf_counter() - wall)
            cpu.append(time.process_time() - proc)
    return {
        "impl": impl,
        "setup_s": setup_s,
        "step_s": times,
        "cpu_s": cpu,
        "peak_rss_gb": vm_hwm_gb(),
        "rss_after_setup_gb": rss_setup,
        "load_average": os.getloadavg()[0],
    }


def child(args: argparse.Namespace, *extra: str) -> dict | list:
    """Run this script in a fresh process (its own peak memory, the shim only there)."""
    cmd = [sys.executable, __file__, *sys.argv[1:], *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        why = "killed (out of memory?)" if out.returncode == -9 else out.stderr.strip()[-2000:]
        sys.exit(f"child process {' '.join(extra)} failed: {why}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def alternate(args: argparse.Namespace) -> list[dict]:
    runs = []
    order = [impl for _ in range(args.repeats) for impl in IMPLEMENTATIONS]
    for n, impl in enumerate(tqdm(order, desc="processes (alternating)", unit="process")):
        run = child(args, "--time-one", impl)
        run["round"] = n // len(IMPLEMENTATIONS)
        runs.append(run)
    return runs


def summarize(runs: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for impl in IMPLEMENTATIONS:
        mine = [r for r in runs if r["impl"] == impl]
        out[impl] = {
            "step_median_s": statistics.median(t for r in mine for t in r["step_s"]),
            "cpu_median_s": statistics.median(t for r in mine for t in r["cpu_s"]),
            "process_medians_s": [statistics.median(r["step_s"]) for r in mine],
            "process_cpu_medians_s": [statistics.median(r["cpu_s"]) for r in mine],
            "peak_rss_gb": [r["peak_rss_gb"] for r in mine],
            "setup_s": [r["setup_s"] for r in mine],
        }
    a, f = out["arcface_torch"], out["facerec"]

    def per_round(key: str) -> list[float]:  # each round's arcface_torch process against its facerec one
        return [x / y for x, y in zip(a[key], f[key], strict=True)]

    out["ratio_wall"] = a["step_median_s"] / f["step_median_s"]
    out["ratio_cpu"] = a["cpu_median_s"] / f["cpu_median_s"]
    out["ratio_per_round"] = per_round("process_medians_s")
    out["ratio_cpu_per_round"] = per_round("process_cpu_medians_s")
    out["ratio_peak_rss"] = max(f["peak_rss_gb"]) / max(a["peak_rss_gb"])
    return out


def plot(out: Path, runs: list[dict], args: argparse.Namespace) -> None:
    """Per-step wall and CPU time, one line per process (the CPU time depends less on what else
    runs on the machine)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    colors = {"arcface_torch": "tab:red", "facerec": "tab:blue"}
    for ax, key, name in zip(axes, ("step_s", "cpu_s"), ("wall", "CPU time of the process"), strict=True):
        for r in runs:
            label = r["impl"] if r["round"] == 0 else None
            ax.plot(range(1, len(r[key]) + 1), r[key], color=colors[r["impl"]], lw=1, alpha=0.8, label=label)
        ax.set(xlabel="timed step", ylabel=f"step, {name} (s)", ylim=(0, None))
        ax.legend()
    what = "small backbone + class layer" if args.backbone else "class layer"
    fig.suptitle(
        f"{what}, {args.classes:,} classes, rate {args.rate}, batch {args.batch}, one line per process", fontsize=9
    )
    save_figure(fig, out / "step_times.png")


# ---- printing ----------------------------------------------------------------------------------
def print_check(results: list[dict]) -> None:
    """Loss of each head and the float64 reference; embedding gradients as max |a - b| / max |b|."""
    print(
        "| margin | sample rate | step | loss arcface_torch | loss facerec | loss float64 "
        "| grad: theirs vs ours | theirs vs float64 | ours vs float64 (exact) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for res in results:
        for s in res["steps"]:
            losses = " | ".join(f"{s[k]:.6f}" for k in ("loss_arcface_torch", "loss_facerec", "loss_float64"))
            grads = " | ".join(f"{s[k]:.1e}" for k in s if k.startswith("grad_"))
            print(f"| {res['margin']} | {res['rate']} | {s['step']} | {losses} | {grads} |")
    for res in results:
        diff = res["weight_rel_diff"]
        print(f"{res['margin']} rate {res['rate']}: class rows after the steps, max rel. difference {diff:.1e}")


def print_speed(summary: dict) -> None:
    print("| implementation | step, median (s) | CPU per step, median (s) | per-process medians (s) | peak RSS (GB) |")
    print("|---|---|---|---|---|")
    for impl in IMPLEMENTATIONS:
        s = summary[impl]
        medians = ", ".join(f"{m:.2f}" for m in s["process_medians_s"])
        rss = ", ".join(f"{m:.2f}" for m in s["peak_rss_gb"])
        print(f"| {impl} | {s['step_median_s']:.3f} | {s['cpu_median_s']:.3f} | {medians} | {rss} |")
    wall, cpu = summary["ratio_per_round"], summary["ratio_cpu_per_round"]
    print(
        f"arcface_torch / facerec: wall {summary['ratio_wall']:.2f}x (per round {min(wall):.2f}-{max(wall):.2f}x), "
        f"CPU {summary['ratio_cpu']:.2f}x (per round {min(cpu):.2f}-{max(cpu):.2f}x); "
        f"facerec's peak RSS {summary['ratio_peak_rss']:.2f} of theirs"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arcface-torch", required=True, help="insightface's recognition/arcface_torch checkout")
    p.add_argument("--classes", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--emb", type=int, default=512)
    p.add_argument("--margin", default="arcface", choices=sorted(MARGINS), help="for the timed runs")
    p.add_argument("--steps", type=int, default=10, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="rounds of alternating processes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backbone", action="store_true", help="small lowres_irse8 backbone instead of leaf embeddings")
    p.add_argument("--check-classes", type=int, default=20_000, help="class count of the correctness check (0: skip)")
    p.add_argument("--out", default="runs/partial_fc_vs_arcface_torch", help="report.json and step_times.png")
    p.add_argument("--time-one", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    p.add_argument("--check-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    path = Path(args.arcface_torch).resolve()
    if args.time_one:
        print(json.dumps(time_one(args.time_one, args)))
        return
    if args.check_only:
        print(json.dumps(check(path, args.check_classes, args.emb, args.rate)))
        return
    report: dict[str, Any] = {
        "config": vars(args),
        "torch": torch.__version__,
        "arcface_torch_sha256": check_checkout(path),
    }
    if args.check_classes:
        report["check"] = child(args, "--check-only")
        print_check(report["check"])
    report["runs"] = alternate(args)
    report["summary"] = summarize(report["runs"])
    print_speed(report["summary"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot(out, report["runs"], args)
    print(f"report: {out / 'report.json'}, plot: {out / 'step_times.png'}")


if __name__ == "__main__":
    main()
