"""Exporting a model for other runtimes: `facerec export MODEL --format onnx`."""

from __future__ import annotations

import argparse
from pathlib import Path

from facerec.cli.pipeline_options import MODEL_HELP
from facerec.cli.registry import command
from facerec.models.io import read_model_file, write_half_precision
from facerec.models.onnx import DEFAULT_OPSET, export_onnx, onnx_difference, torch_model_for_export


def run_export(args: argparse.Namespace) -> int:
    if args.format == "fp16":
        out = write_half_precision(args.model, args.out or f"{Path(args.model).stem}_fp16.pt")
        print(f"wrote {out} (weights in half precision; {read_model_file(out).card.short_id})")
        return 0
    model = torch_model_for_export(args.model)
    out = export_onnx(model, args.out or f"{Path(args.model).stem}.onnx", opset=args.opset)
    difference = onnx_difference(model, out)
    print(f"wrote {out} ({model.card.short_id}, {model.input_size}x{model.input_size} input, opset {args.opset})")
    print(f"largest |onnx - torch| on 4 random crops: {difference:.2e}")
    return 0


@command("export", "write a model as ONNX (dynamic batch axis, the model card in its metadata) or fp16", run_export)
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument(
        "--format",
        default="onnx",
        choices=["onnx", "fp16"],
        help="onnx, or fp16: a facerec model file with half-precision weights, half the size",
    )
    p.add_argument(
        "--out", help="the file to write (default: MODEL's file stem + .onnx, or + _fp16.pt, in this folder)"
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX operator set version")
