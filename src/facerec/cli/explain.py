"""The `facerec explain` command (see its handler)."""

from __future__ import annotations

import argparse

from facerec.cli.pipeline_options import add_pipeline_arguments, pipeline_from
from facerec.cli.registry import command

METHOD_CHOICES = {"occlusion": ("occlusion",), "gradient": ("gradient",), "both": ("occlusion", "gradient")}


def run_explain(args: argparse.Namespace) -> int:
    from facerec.analysis.explain import ExplainOptions, explain_pair, write_explanation

    pipeline = pipeline_from(args, several="largest", missing="skip")
    options = ExplainOptions(METHOD_CHOICES[args.method], args.patch, args.stride, args.steps, args.top)
    explanation = explain_pair(pipeline, args.image_a, args.image_b, options, progress=True)
    paths = write_explanation(explanation, args.out, {"images": [args.image_a, args.image_b], **pipeline.describe()})
    summary = explanation.summary()
    verdict = "" if summary["same"] is None else f" ({'same' if summary['same'] else 'different'} person)"
    print(f"{explanation.model}: cosine {explanation.score:.4f}{verdict}")
    for side, maps in summary["faces"].items():
        for method, found in maps.items():
            best = found["landmarks"]
            print(f"  {side.upper()} {method}: strongest landmark region {max(best, key=best.__getitem__)}")
    print(f"overlay {paths['png']}, report {paths['json']}, maps {paths['maps']}")
    return 0


@command(
    "explain",
    "which regions of two faces drive their similarity: occlusion and integrated-gradients maps",
    run_explain,
)
def _explain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image_a", help="first image (one face, or the largest is taken)")
    p.add_argument("image_b", help="second image")
    add_pipeline_arguments(p)
    p.add_argument(
        "--method",
        choices=list(METHOD_CHOICES),
        default="both",
        help="occlusion (any model), gradient (integrated gradients; torch models only) or both",
    )
    p.add_argument("--patch", type=int, help="occlusion patch side in crop pixels (default: a quarter of the crop)")
    p.add_argument("--stride", type=int, help="occlusion stride in crop pixels (default: half the patch)")
    p.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    p.add_argument("--top", type=int, default=5, help="regions listed per map in the report")
    p.add_argument("--out", default="explanation", help="folder for explanation.png, explanation.json, maps.npz")
