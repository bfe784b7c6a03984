"""The options every command that embeds images shares: which model, seen how, on what device."""

from __future__ import annotations

import argparse
from typing import Any

from facerec.models.io import RUNTIMES
from facerec.pipeline import RecognitionPipeline

MODEL_HELP = (
    "'default' (the most accurate model measured: today dlib's reference network, run in torch, 99.17%% on "
    "LFW fold 9, ~280 faces/s on 2 CPU cores), 'resnet128' (ours: dlib's network retrained for 128 px crops, "
    "98.33%%, ~330 faces/s), 'fast' (ours: a 64 px MobileFaceNet, 95.33%%, 92.33%% on CACD-VS, ~500 faces/s), "
    "'dlib', a model.pt / training checkpoint or an exported .onnx"
)
RUNTIME_HELP = (
    "torch, onnx (onnxruntime; a torch model is exported once to ~/.cache/facerec/onnx) or auto "
    "(default: on a CPU, onnxruntime for the batch sizes at which it was measured faster, torch for the "
    "others; torch on a GPU; onnxruntime for a .onnx model)"
)
DETECTOR_HELP = "mtcnn, dlib, dlib-native (dlib's own chips) or none (the images are aligned crops)"


def add_pipeline_arguments(
    p: argparse.ArgumentParser, model: str | None = "default", detector: str = "mtcnn", degrade: bool = False
) -> None:
    p.add_argument("--model", default=model, required=model is None, help=MODEL_HELP)
    p.add_argument("--detector", default=detector, help=DETECTOR_HELP)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    add_runtime_argument(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per network call")
    if degrade:
        p.add_argument(
            "--degrade", type=int, default=0, help="score low-resolution faces: N px across on the 112 template"
        )


def add_runtime_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=RUNTIMES, default="auto", help=RUNTIME_HELP)


def pipeline_from(args: argparse.Namespace, **policy: Any) -> RecognitionPipeline:
    """The pipeline the arguments name; `policy`: several/missing/flip as the command needs."""
    return RecognitionPipeline.load(
        args.model,
        args.runtime,
        detector=args.detector,
        device=args.device,
        batch_size=args.batch_size,
        degrade=getattr(args, "degrade", 0),
        **policy,
    )
