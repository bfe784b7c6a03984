"""`facerec debias`: a model whose embeddings lose the directions between demographic groups."""

from __future__ import annotations

import argparse
from pathlib import Path

from facerec.cli.analyze import analysis_source
from facerec.cli.pipeline_options import MODEL_HELP
from facerec.cli.registry import command
from facerec.errors import ConfigError


def run_debias(args: argparse.Namespace) -> int:
    from facerec.analysis.studies import debias_study

    out = Path(args.out)
    if out.suffix != ".pt":
        raise ConfigError(f"--out is the model file to write and ends in .pt, got {out}")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists: choose another --out or add --overwrite")
    report = debias_study(analysis_source(args), args.model, args.detector, args.groups, out, args.components)
    shares = ", ".join(f"{s:.1%}" for s in report["variance_share"])
    sizes = ", ".join(f"{name} {count}" for name, count in report["group_sizes"].items())
    print(f"{report['directions']} directions between {sizes} (shares of the between-group variance: {shares})")
    print(f"wrote {out} (digest {report['written_digest'][:12]}) and {out.with_suffix('.json')}")
    print("its thresholds are not known yet: measure one with `facerec calibrate` (--write-card)")
    return 0


@command(
    "debias",
    "write a model without the embedding directions that separate demographic groups (fitted on labelled faces)",
    run_debias,
)
def _debias_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="fast", help=MODEL_HELP + " (a facerec network)")
    p.add_argument("--lfw", help="LFW root: fit on its View 2 images (with --groups gender or race)")
    p.add_argument("--images", help="or a tree root/<identity>/<image> (UTKFace: one folder per face)")
    p.add_argument("--folds", type=int, nargs="+", help="LFW View 2 folds to fit on (0-based; default all)")
    p.add_argument("--groups", required=True, help="gender or race (LFW label lists), or a CSV key,group")
    p.add_argument("--components", type=int, help="directions to remove (default all: groups - 1)")
    p.add_argument("--detector", default="none", help="mtcnn, dlib, dlib-native or none (pre-aligned input)")
    p.add_argument("--out", required=True, help="the model file to write (.pt); its report goes beside it (.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--cache", help="embedding cache folder (default ~/.cache/facerec/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="always embed afresh")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--reuse", nargs="*", metavar="MODEL=NPZ", help="a model's embeddings .npz to take rows from")
