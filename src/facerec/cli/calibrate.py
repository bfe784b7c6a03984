"""The `facerec calibrate` command (see its handler)."""

from __future__ import annotations

import argparse
from pathlib import Path

from facerec.cli.pipeline_options import DETECTOR_HELP, MODEL_HELP, add_runtime_argument, pipeline_from
from facerec.cli.registry import command
from facerec.eval.calibration import Calibration
from facerec.pipeline import RecognitionPipeline


def run_calibrate(args: argparse.Namespace) -> int:
    from facerec.eval.calibration_run import CalibrationData, check_card_target, run_calibration

    pipeline = pipeline_from(args, several="central", missing="center", flip=args.flip)
    if args.write_card:  # refused before the long part, not after it
        check_card_target(pipeline.model, Path(args.write_card), args.overwrite)
    for target in args.gallery or []:
        gallery_step(args, target, pipeline, None)
    data = CalibrationData(Path(args.data), args.pairs, Path(args.base) if args.base else None, args.folds)
    run = run_calibration(pipeline, data, args.far, Path(args.out), args.bootstrap, args.level, args.seed)
    print_calibration(run.calibration)
    print(f"report and plot in {args.out}")
    if run.record is None:
        return 1
    if args.write_card:
        from facerec.eval.calibration_run import write_calibrated_model

        path = write_calibrated_model(pipeline.model, run.record, Path(args.write_card), args.overwrite)
        print(f"wrote {path}: card threshold {run.record.describe()}")
    for target in args.gallery or []:
        gallery_step(args, target, pipeline, run.record.value)
    return 0


def print_calibration(cal: Calibration) -> None:
    print(f"{cal.impostor_pairs:,} impostor pairs, {cal.mated_pairs:,} mated pairs, {cal.subjects} subjects")
    if cal.threshold is None:
        print(f"no threshold: {cal.reason}")
        return
    print(f"threshold at FAR {cal.far:g}: {cal.threshold:.4f}{_interval(cal.threshold_ci)}")
    print(f"achieved FMR {cal.fmr:.3g}{_interval(cal.fmr_ci)} ({cal.false_matches} false matches)")
    print(f"FNMR {cal.fnmr:.4f}{_interval(cal.fnmr_ci)}")
    if cal.resamples:
        print(f"{cal.level:.0%} intervals from {cal.resamples} resamples of {cal.bootstrap_unit}")
    if cal.largest_subject_mated_share is not None and cal.largest_subject_mated_share > 0.25:
        share, mean = cal.largest_subject_mated_share, cal.fnmr_subject_mean
        print(f"note: one subject holds {share:.0%} of the mated pairs; FNMR averaged over subjects {mean:.4f}")
    if cal.warning:
        print(f"warning: {cal.warning}")


def _interval(values: list[float] | None) -> str:
    return f" [{values[0]:.4g}, {values[1]:.4g}]" if values else ""


def gallery_step(args: argparse.Namespace, target: str, pipeline: RecognitionPipeline, value: float | None) -> None:
    """Check that the threshold fits the gallery (value None), or set it."""
    from facerec.serve.calibration import check_gallery, parse_gallery_target, set_calibrated_threshold
    from facerec.serve.store import open_store

    location, name = parse_gallery_target(target)
    model, describe = pipeline.model, pipeline.describe()
    with open_store(location, args.key_file, plaintext=args.plaintext, create=False) as store:
        if value is None:
            for note in check_gallery(store, name, model.name, model.digest, describe):
                print(f"note: {note}")
            return
        record, _ = set_calibrated_threshold(store, name, model.name, model.digest, describe, value)
    print(f"gallery '{name}' of {location}: threshold {record.threshold:.4f}")


@command(
    "calibrate",
    "the threshold for a target false-match rate on your labelled data, with bootstrap intervals",
    run_calibrate,
)
def _calibrate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("data", help="identity-folder tree root/<person>/<image>, or with --pairs a pairs file")
    p.add_argument("--far", type=float, required=True, help="target false-match rate, e.g. 1e-4")
    p.add_argument(
        "--pairs", action="store_true", help="DATA is a pairs CSV (path1,path2,label[,fold]) or LFW pairs.txt"
    )
    p.add_argument("--base", help="where a pairs file's images are (CSV: its folder; LFW pairs.txt: ROOT/images)")
    p.add_argument("--folds", type=int, nargs="+", help="only these folds of a pairs file (0-based)")
    p.add_argument("--detector", default="mtcnn", help=DETECTOR_HELP)
    p.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="embeddings summed with the mirror image's, as verify/identify/serve use them (default: on)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no intervals)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--out", default="runs/calibrate", help="folder for report.json and calibration.png")
    p.add_argument("--write-card", metavar="OUT.pt", help="write a model file whose card holds the threshold")
    p.add_argument("--overwrite", action="store_true", help="let --write-card replace an existing file")
    p.add_argument("--gallery", action="append", metavar="STORE:NAME", help="set this gallery's threshold (repeatable)")
    p.add_argument("--key-file", help="the key file of the --gallery store (default: $FACEREC_STORE_KEY)")
    p.add_argument("--plaintext", action="store_true", help="the --gallery store keeps plaintext vectors")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=32, help="images per network call")
    add_runtime_argument(p)
