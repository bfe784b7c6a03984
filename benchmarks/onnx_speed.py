"""Faces per second of a model's network on torch and on onnxruntime, on the CPU, for aligned
crops (network only, no detection), at each batch size; the median of several timed calls after
a warm-up. The ONNX graph is exported to a temporary folder first. Run it on a quiet machine:
a neighbor's load slows torch's threads far more than onnxruntime's.

The crossover is the smallest measured batch at which torch is at least as fast as onnxruntime;
`--runtime auto` runs smaller batches on onnxruntime. `--record` keeps the measurement (batches,
both speeds, crossover, machine, versions, this command) in facerec/models/weights/
runtime_speed.json under the model's digest, where the auto runtime reads it.

    python benchmarks/onnx_speed.py --threads 2
    python benchmarks/onnx_speed.py --batch 1 2 4 8 16 32 --repeats 50 --record
    python benchmarks/onnx_speed.py --model runs/r50/model.pt --batch 1 8 32 --repeats 20
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import onnxruntime
import torch

from facerec.models.io import load_recognition_model
from facerec.models.onnx import export_onnx, load_onnx_model
from facerec.models.runtime import SPEED_FILE, measure_speeds, record_speeds, speed_record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="a named model, model file or checkpoint")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of both runtimes")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--record", action="store_true", help=f"keep the measurement in {SPEED_FILE.name}")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch_model = load_recognition_model(args.model, "cpu", runtime="torch")
    size = torch_model.input_size
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model = load_onnx_model(export_onnx(torch_model, Path(tmp) / "model.onnx"), threads=args.threads)
        print(
            f"{platform.machine()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
            f"{args.threads} threads, model {torch_model.card.short_id} ({size}x{size})\n"
        )
        speeds = measure_speeds(torch_model.net, onnx_model.net, size, args.batch, args.repeats)
    print("| batch | torch faces/s | onnxruntime faces/s | onnxruntime / torch |")
    print("|---|---|---|---|")
    for batch, on_torch, on_onnx in zip(speeds["batches"], speeds["torch"], speeds["onnx"], strict=True):
        print(f"| {batch} | {on_torch:.1f} | {on_onnx:.1f} | {on_onnx / on_torch:.2f} |")
    print(f"\ncrossover (smallest batch where torch is at least as fast): {speeds['crossover']}")
    if args.record:
        command = "python benchmarks/onnx_speed.py " + " ".join(sys.argv[1:])
        record = speed_record(speeds, torch_model.card, args.threads, command)
        print(f"recorded in {record_speeds(torch_model.card, record)}")


if __name__ == "__main__":
    main()
