"""Does the class-row storage change what Partial FC learns? The synthetic Partial FC recipe
trained with each storage mode and several seeds; held-out verification accuracy per run, the
mean and spread per mode (the spread between seeds is the run-to-run noise to compare with).

Each run is `facerec train partial_fc_synthetic` with the `--set` overrides of `--recipe`
(default: a shorter, cheaper variant that fits the shared 2-core machine) plus the mode's
`head.options.storage` and `train.seed`. The mmap mode writes its rows under `--scratch`.

    python benchmarks/partial_fc_storage_accuracy.py --seeds 0 1 2 --jobs 2 --out runs/pfc_storage_accuracy
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from facerec.core.plots import pyplot, save_figure

RECIPE = [
    "data.synthetic.identities=300",
    "data.batch_size=64",
    "backbone.options={widths: [8, 16, 32, 64], se: false}",
    "train.max_steps=200",
    "schedule.warmup_steps=20",
    "train.threads=1",
    "train.progress=false",
    "train.checkpoint_every=1000",
]
MODES = {
    "fp32": "{}",
    "bf16": "{dtype: bf16, rounding: stochastic}",
    "bf16-nearest": "{dtype: bf16, rounding: nearest}",
    "bf16-no-momentum": "{dtype: bf16, rounding: stochastic, momentum: false}",
    "bf16-mmap": "{dtype: bf16, rounding: stochastic, backend: mmap, directory: SCRATCH}",
}
HEAD = "{sample_rate: 0.1, scale: 30.0, m1: 1.0, m2: 0.0, m3: 0.3, update: sparse, storage: STORAGE}"


def run(mode: str, seed: int, args: argparse.Namespace) -> dict:
    out = Path(args.out) / f"{mode}_seed{seed}"
    if not (out / "results.json").is_file():
        storage = MODES[mode].replace("SCRATCH", str(Path(args.scratch) / f"{mode}_seed{seed}"))
        sets = [*args.recipe, f"head.options={HEAD.replace('STORAGE', storage)}", f"train.seed={seed}"]
        cmd = [sys.executable, "-m", "facerec.cli", "train", "partial_fc_synthetic", "--output-dir", str(out)]
        done = subprocess.run([*cmd, *[x for s in sets for x in ("--set", s)]], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{mode} seed {seed} failed:\n{done.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    losses = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    return {"mode": mode, "seed": seed, "accuracy": results["val_accuracy"], "final_loss": losses[-1]["loss"]}


def summarize(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        acc = [r["accuracy"] for r in rows if r["mode"] == mode]
        out[mode] = {
            "runs": len(acc),
            "mean": statistics.fmean(acc),
            "std": statistics.stdev(acc) if len(acc) > 1 else None,
            "accuracies": acc,
            "final_losses": [r["final_loss"] for r in rows if r["mode"] == mode],
        }
    return out


def write_report(rows: list[dict], args: argparse.Namespace) -> dict[str, dict]:
    summary = summarize(rows)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report = {"recipe": args.recipe, "runs": rows, "modes": summary}
    (Path(args.out) / "report.json").write_text(json.dumps(report, indent=2))
    plot(summary, Path(args.out) / "accuracy.png")
    return summary


def plot(summary: dict[str, dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, s in enumerate(summary.values()):
        ax.scatter([i] * s["runs"], [100 * a for a in s["accuracies"]], color="C0")
        ax.errorbar(i + 0.15, 100 * s["mean"], yerr=100 * (s["std"] or 0), fmt="s", color="C1", capsize=4)
    ax.set_xticks(range(len(summary)), list(summary), fontsize=8)
    ax.set(ylabel="held-out verification accuracy (%)", title="Partial FC class-row storage: runs and mean +- sd")
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recipe", nargs="*", default=RECIPE, help="--set overrides of the recipe for every run")
    p.add_argument("--out", default="runs/pfc_storage_accuracy")
    p.add_argument("--mmap-seeds", type=int, nargs="*", default=[0], help="seeds of the bf16-mmap mode")
    p.add_argument("--scratch", default="data/pfc_storage_accuracy", help="mmap files (removable afterwards)")
    p.add_argument("--jobs", type=int, default=1, help="training runs at once (one thread each)")
    args = p.parse_args()
    # seed-major, so every mode has a run early; the mmap mode (bit-identical to bf16 in memory
    # by test) needs fewer
    jobs = [(seed, mode) for seed in args.seeds for mode in args.modes if mode != "bf16-mmap"]
    jobs += [(seed, "bf16-mmap") for seed in args.mmap_seeds if "bf16-mmap" in args.modes]
    rows: list[dict] = []
    summary: dict[str, dict] = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        for row in tqdm(pool.map(lambda job: run(job[1], job[0], args), jobs), total=len(jobs), unit="run"):
            rows.append(row)
            summary = write_report(rows, args)  # after every run: a partial report survives an interruption
    print("| storage | runs | accuracy mean +- sd (%) | per run (%) |\n|---|---|---|---|")
    for mode, s in summary.items():
        sd = f"{100 * s['std']:.2f}" if s["std"] is not None else "-"
        each = ", ".join(f"{100 * a:.2f}" for a in s["accuracies"])
        print(f"| {mode} | {s['runs']} | {100 * s['mean']:.2f} +- {sd} | {each} |")


if __name__ == "__main__":
    main()
