"""Privacy analyses: moving a gallery between models by a map (what it costs, and what it gives a
thief), and what a stolen gallery store gives away."""

from __future__ import annotations

import argparse
from pathlib import Path

from facerec.cli.analyze import add_analysis_arguments, analysis_source
from facerec.cli.registry import command


def model_spec(text: str) -> tuple[str, str, Path | None]:
    """MODEL[:DETECTOR[:ROOT]] -> (model, detector, image root or None)."""
    model, _, rest = text.partition(":")
    detector, _, root = rest.partition(":")
    return model, detector or "mtcnn", Path(root) if root else None


def run_analyze_migration(args: argparse.Namespace) -> int:
    from facerec.analysis.migration_study import migration_study

    models = [model_spec(args.model_a), model_spec(args.model_b)]
    out = Path(args.out)
    source = analysis_source(args)
    migration_study(source, models, args.calibration_folds, args.eval_folds, tuple(args.sizes), args.repeats, out)
    print((out / "table.md").read_text(), end="")
    print(f"report, table and plot in {out}")
    return 0


@command(
    "analyze migration",
    "a gallery moved between two models by a ridge map, against enrolling again, by calibration size",
    run_analyze_migration,
)
def _analyze_migration_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-a", required=True, help="MODEL[:DETECTOR[:ROOT]], ROOT: a pre-aligned copy of LFW's images")
    p.add_argument("--model-b", default="dlib", help="the same for the other model")
    p.add_argument("--calibration-folds", type=int, nargs="+", default=list(range(9)), help="LFW folds of calibration")
    p.add_argument("--eval-folds", type=int, nargs="+", default=[9], help="LFW folds of the gallery and probes")
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100, 500, 2000], help="calibration sizes")
    p.add_argument("--repeats", type=int, default=5, help="calibration draws per size")
    add_analysis_arguments(p, images=False, model=False)


def run_analyze_stolen_gallery(args: argparse.Namespace) -> int:
    from facerec.serve.protection import stolen_gallery_study

    report = stolen_gallery_study(analysis_source(args), args.model, args.detector, Path(args.out))
    for kind in ("encrypted", "plaintext"):
        r = report[kind]
        auc = ", ".join(
            f"{view} {v['auc']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]" for view, v in r["linking"].items()
        )
        print(f"{kind}: linking AUC {auc}; rank-1 with the thief's model {100 * r['rank1_with_own_model']:.1f}%")
    print(f"chance rank-1 {100 * report['chance_rank1']:.2f}%; report in {args.out}")
    return 0


@command(
    "analyze stolen-gallery",
    "what a thief can do with copies of gallery stores: keyed against plaintext",
    run_analyze_stolen_gallery,
)
def _analyze_stolen_gallery_args(p: argparse.ArgumentParser) -> None:
    add_analysis_arguments(p)
