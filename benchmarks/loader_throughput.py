"""How fast the training loop's input arrives: images/s of augmented batches ready on the device,
without the network, for each way the loader can work (data.augment_on, data.preload), and
what each costs per image on one core: in a loader worker (an item) and on the device (the
collated batch's augmentation; on a CPU 'device', one thread).

Runs the trainer's own loader and `Trainer.batch_images` on a training config (by default the
GPU student's compact trees), so what it times is what a run waits for. Prints a Markdown
table; `--json` writes the rows.

    python benchmarks/loader_throughput.py --workers 2 --batches 40
    python benchmarks/loader_throughput.py --device cuda --workers 14 --batches 200
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from facerec.config import load_config
from facerec.train import Trainer

MODES = {
    "loader": ["data.augment_on=loader", "data.preload=false"],
    "device": ["data.augment_on=device", "data.preload=false"],
    "device+preload": ["data.augment_on=device", "data.preload=true"],
}


def measure(args: argparse.Namespace, mode: str) -> dict:
    sets = [
        *MODES[mode],
        f"data.num_workers={args.workers}",
        f"data.batch_size={args.batch}",
        f"train.device={args.device}",
        "train.progress=false",
        f"train.output_dir={args.scratch}/{mode}",
        *args.set,
    ]
    start = time.perf_counter()
    trainer = Trainer(load_config(args.config, sets), callbacks=[])
    setup = time.perf_counter() - start
    costs = per_image_costs(trainer, args)  # before the loader's workers start: they would share the cores
    batches = iter(trainer.epoch_loader())
    for _ in range(args.warmup):
        trainer.batch_images(next(batches))
    sync(args.device)
    start = time.perf_counter()
    images = 0
    for _ in range(args.batches):
        images += len(trainer.batch_images(next(batches)))
    sync(args.device)
    seconds = time.perf_counter() - start
    del batches, trainer  # the trainer holds the loader: its persistent workers end with it
    return {"mode": mode, "images_per_s": images / seconds, "setup_s": setup, "workers": args.workers, **costs}


def per_image_costs(trainer: Trainer, args: argparse.Namespace) -> dict:
    """Milliseconds per image, on one core: what a loader worker does for an item, and what the
    device does to a collated batch (nothing in loader mode)."""
    items = [(i % len(trainer.train_set), 10_000 + i) for i in range(args.items)]
    start = time.perf_counter()
    samples = [trainer.train_set[item] for item in items]
    worker_ms = (time.perf_counter() - start) * 1000 / len(items)
    batch = torch.utils.data.default_collate(samples[: args.batch])
    start = time.perf_counter()
    for _ in range(3):
        trainer.batch_images(batch)
    sync(args.device)
    device_ms = (time.perf_counter() - start) * 1000 / (3 * len(batch["label"]))
    return {"worker_ms_per_image": worker_ms, "device_ms_per_image": device_ms if "augment" in batch else 0.0}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default_model_gpu", help="training config (name or YAML)")
    parser.add_argument("--set", action="append", default=[], help="further config overrides, key=value")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=5, help="batches before the clock starts")
    parser.add_argument("--batches", type=int, default=40, help="batches timed")
    parser.add_argument("--items", type=int, default=1000, help="items timed one by one for the per-image costs")
    parser.add_argument("--scratch", default="runs/loader_throughput", help="the runs' output folders")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the main process's augmentation on a CPU 'device': one core, as the step would leave
    rows = [measure(args, mode) for mode in args.modes]
    machine = platform.processor() or platform.machine()
    print(f"\n{machine}, {args.workers} workers, batch {args.batch}, {args.device}\n")
    print("| loader | images/s | set-up s | worker ms/image | device ms/image |")
    print("|---|---|---|---|---|")
    for r in rows:
        costs = f"{r['worker_ms_per_image']:.3f} | {r['device_ms_per_image']:.3f}"
        print(f"| {r['mode']} | {r['images_per_s']:,.0f} | {r['setup_s']:.1f} | {costs} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
