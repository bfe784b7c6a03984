"""Distillation commands: distill-targets."""

from __future__ import annotations

import argparse
from pathlib import Path

from facerec.cli.registry import command


def run_distill_targets(args: argparse.Namespace) -> int:
    from facerec.distill.targets import write_targets

    reuse = [Path(p) for p in args.reuse or []]
    out = write_targets(args.tree, args.out, args.teacher, args.detector, args.source_root, reuse, args.device)
    print(f"teacher embeddings of {args.tree} written to {out}; train with --set distill.targets={out}")
    return 0


@command(
    "distill-targets",
    "embed a training tree with a teacher model, for distillation (distill.targets)",
    run_distill_targets,
)
def _distill_targets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("tree", help="identity-folder tree of training images")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--teacher", default="dlib", help="'dlib' (reference model) or a facerec model.pt")
    p.add_argument("--detector", default="mtcnn", help="how the teacher sees the images (none: as they are)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--source-root", help="embed the same relative paths under this folder (e.g. the originals)")
    p.add_argument("--reuse", nargs="*", help="the teacher's embeddings .npz files (by source path) to take rows from")
