"""Privacy analyses: moving a gallery between models by a map (what it costs, and what it gives a
thief), what a stolen gallery store gives away, and whether fine-tuning hides who a model saw."""

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


def run_analyze_transfer_leakage(args: argparse.Namespace) -> int:
    from facerec.analysis.transfer_leakage import PeopleSets, TransferLeakagePlan, run_study, table

    people_file = Path(args.lfw) / "meta" / "people.txt"
    people = PeopleSets.from_lfw_folds(people_file, args.members_folds, args.finetune_folds, args.non_member_folds)
    options = {"recipe": args.config, "overrides": args.set or [], "finetune_overrides": args.finetune_set or []}
    plan = TransferLeakagePlan(
        Path(args.aligned), people, Path(args.work), Path(args.out), **options, kinds=tuple(args.kinds),
        min_images=args.min_images, budgets=tuple(args.pairs), n_boot=args.bootstrap, device=args.device,
    )  # fmt: skip
    report = run_study(plan)
    print(table(report), end="")
    print(f"report.json, table.md and transfer_leakage.png in {args.out} ({report['seconds']:.0f} s)")
    return 0


@command(
    "analyze transfer-leakage",
    "FaceLeaks: membership of A after fine-tuning on B (full, output layer, head), embeddings vs scores only",
    run_analyze_transfer_leakage,
)
def _analyze_transfer_leakage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lfw", required=True, help="LFW root: its meta/people.txt splits the people into folds")
    p.add_argument("--aligned", required=True, help="aligned identity tree of LFW (e.g. data/lfw_mtcnn112)")
    p.add_argument("--members-folds", type=int, nargs="+", default=[0, 1, 2, 3], help="people A (model_A's)")
    p.add_argument("--finetune-folds", type=int, nargs="+", default=[4, 5, 6], help="people B (fine-tuning, control)")
    p.add_argument("--non-member-folds", type=int, nargs="+", default=[7, 8], help="people N (never trained on)")
    p.add_argument("--min-images", type=int, default=2, help="leave out people with fewer images")
    p.add_argument("--config", default="transfer_leakage_irse8", help="training recipe of every model")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override for every run (repeatable)")
    p.add_argument("--finetune-set", action="append", metavar="KEY=VALUE", help="override for the fine-tunings")
    p.add_argument("--kinds", nargs="+", default=["full", "output", "head"], help="fine-tunings to run")
    p.add_argument(
        "--pairs", type=int, nargs="+", default=[1, 3], help="pairs per person the scores-only attacker asks"
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (over people)")
    p.add_argument("--work", default="runs/transfer_leakage", help="folder for the trees, runs and embeddings")
    p.add_argument("--out", required=True, help="folder for report.json, table.md and the plot")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
