"""Evaluation commands, one per registered protocol: eval lfw, eval pairs, eval bin, eval cacd-vs,
eval fgnet, eval identify, eval templates.

A new protocol is registered in `facerec.eval.protocols`; its command here says which arguments
become the protocol's options.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facerec.cli.pipeline_options import add_pipeline_arguments, pipeline_from
from facerec.cli.registry import command
from facerec.errors import ConfigError
from facerec.eval.cross_age import fgnet_lines
from facerec.eval.pose_breakdown import breakdown_lines
from facerec.eval.protocols import build_protocol
from facerec.eval.templates import POOLINGS, report_lines, write_template_set

Options = Callable[[argparse.Namespace], dict[str, Any]]


def protocol_handler(name: str, options: Options) -> Callable[[argparse.Namespace], int]:
    """A handler that runs protocol `name` with the options the arguments give, on the pipeline
    they name (every image gets a crop: a centered one when no face is found)."""

    def run(args: argparse.Namespace) -> int:
        protocol = build_protocol(name, options(args))
        pipeline = pipeline_from(args, several="central", missing="center", flip=args.flip)
        report = protocol.evaluate(pipeline, Path(args.out), progress=True)
        print_report(report, Path(args.out))
        return 0

    return run


def print_report(report: dict[str, Any], out: Path) -> None:
    if report.get("protocol") == "templates":  # per pooling and gallery, not per flip
        print("\n".join([*report_lines(report), f"report in {out}"]))
        return
    if report.get("protocol") == "fgnet":  # identification per flip setting
        print("\n".join([*fgnet_lines(report), f"report in {out}"]))
        return
    for key in ("no_flip", "flip"):
        if key in report:
            r = report[key]
            print(
                f"{key:8s} accuracy {100 * r['kfold_accuracy']:.2f}% +- {100 * r['kfold_std']:.2f}%  "
                f"AUC {r['auc']:.4f}  EER {100 * r['eer']:.2f}%  TAR@FAR=1e-3 {r['tar_at_far']['0.001']}"
            )
    for key in ("no_flip", "flip") if "pose" in report else ():
        print(f"{key}, by |yaw difference| within a pair (poses: {report['pose']['pose_file']}):")
        print("\n".join(breakdown_lines(report["pose"][key])))
    if "rank1" in report:
        print(
            f"rank-1 {100 * report['rank1']:.2f}%  rank-5 {100 * report['rank5']:.2f}%  "
            f"({report['mated_probes']} mated probes, {report['gallery_identities']} enrolled identities)"
        )
        if "fnir_at_fpir" in report:
            print("FNIR at FPIR:", report["fnir_at_fpir"])
    print(f"report in {out}")


def add_eval_arguments(p: argparse.ArgumentParser, detector: str = "mtcnn", flip: bool = True) -> None:
    add_pipeline_arguments(p, model="dlib", detector=detector, degrade=True)
    p.add_argument("--out", default="runs/eval", help="folder for the report, the plots and the embeddings")
    p.set_defaults(flip=flip)


def add_pose_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pose",
        help="pose.tsv of the images (`facerec data pose`; matched by identity/file name) for the breakdown by "
        "yaw difference (default: a pose.tsv beside the images, if any)",
    )


def lfw_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"root": args.root, "pairs": args.pairs, "folds": args.folds, "published": args.published, "pose": args.pose}


@command(
    "eval lfw",
    "LFW 10-fold verification (View 2 pairs.txt, or View 1 with --pairs)",
    protocol_handler("lfw", lfw_options),
)
def _eval_lfw_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="LFW folder holding images/<Name>/<Name>_NNNN.jpg and meta/")
    p.add_argument("--pairs", help="pairs file (default ROOT/meta/pairs.txt)")
    p.add_argument("--folds", type=int, nargs="+", help="evaluate only these protocol folds (0-based)")
    p.add_argument("--published", nargs="*", help="published ROC files to draw on the same axes")
    add_pose_argument(p)
    add_eval_arguments(p)


def pairs_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"csv": args.csv, "base": args.base, "pose": args.pose}


@command("eval pairs", "verification on a CSV of path1,path2,label[,fold]", protocol_handler("pairs", pairs_options))
def _eval_pairs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("csv")
    p.add_argument("--base", help="folder the CSV's relative paths start from (default: the CSV's folder)")
    add_pose_argument(p)
    add_eval_arguments(p)


@command(
    "eval bin",
    "verification on an insightface-style .bin file (lfw.bin, agedb_30.bin ...)",
    protocol_handler("bin", lambda args: {"file": args.bin}),
)
def _eval_bin_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bin")
    add_eval_arguments(p, detector="none")


def cacd_vs_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"root": args.root, "folds": args.folds, "pose": args.pose}


@command(
    "eval cacd-vs",
    "CACD-VS cross-age verification: 4,000 pairs (iiii_0.jpg / iiii_1.jpg) in ten identity-disjoint folds",
    protocol_handler("cacd_vs", cacd_vs_options),
)
def _eval_cacd_vs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="folder of the 8,000 images: raw 250x250, or an aligned copy (--detector none)")
    p.add_argument("--folds", type=int, nargs="+", help="evaluate only these folds (0-based)")
    add_pose_argument(p)
    add_eval_arguments(p)


@command(
    "eval fgnet",
    "FG-NET identification across ages: each image a probe against all others (rank-1, CMC, by age gap and age)",
    protocol_handler("fgnet", lambda args: {"root": args.root}),
)
def _eval_fgnet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="folder of PPPAaa[x].JPG images (person PPP at age aa), or one holding images/")
    add_eval_arguments(p)


def identify_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"root": args.root, "seed": args.seed, "gallery_images": args.gallery_images, "unenrolled": args.unenrolled}


@command(
    "eval identify",
    "closed- and open-set identification on an identity-folder tree",
    protocol_handler("identify", identify_options),
)
def _eval_identify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="root/<identity>/<image>")
    p.add_argument("--seed", type=int, default=0, help="seed of the gallery/probe split")
    p.add_argument("--gallery-images", type=int, default=1, help="images per identity enrolled")
    p.add_argument("--unenrolled", type=float, default=0.3, help="fraction of identities kept out (non-mated)")
    add_eval_arguments(p, flip=False)
    p.add_argument("--flip", action="store_true", help="flip test-time augmentation")


def templates_options(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("root", "csv", "pairs", "galleries", "probes", "prefix", "images", "pooling", "quality")
    return {key: getattr(args, key) for key in keys}


def run_templates(args: argparse.Namespace) -> int:
    """`eval templates`; with --make-from, first writes an IJB-layout set from a tree at ROOT."""
    if args.make_from and not args.root:
        raise ConfigError("--make-from needs ROOT, the folder to write the template set to")
    if args.make_from:
        made = write_template_set(args.make_from, args.root, min_images=args.min_images, prefix=args.prefix)
        print(
            f"wrote {made.root}: {made.subjects} subjects, {made.templates} templates of {made.images} images, "
            f"{made.genuine_pairs} genuine + {made.impostor_pairs} impostor pairs, galleries {made.galleries}, "
            f"{made.probes} probe templates"
        )
    return protocol_handler("templates", templates_options)(args)


@command(
    "eval templates",
    "1:1 and 1:N template evaluation in the IJB-B/IJB-C layout or a templates CSV",
    run_templates,
)
def _eval_templates_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", nargs="?", help="IJB layout: ROOT/meta/<prefix>_face_tid_mid.txt ..., ROOT/loose_crop/")
    p.add_argument("--prefix", default="ijbc", help="file prefix: ijbc or ijbb")
    p.add_argument("--images", help="image folder (default ROOT/loose_crop or ROOT/images)")
    p.add_argument("--csv", help="instead of ROOT: a CSV of template_id,subject_id,path[,media_id]")
    p.add_argument("--pairs", help="with --csv: template pairs t1,t2,label (default: every two templates)")
    p.add_argument("--galleries", nargs="+", help="with --csv: 1:N gallery CSVs (TEMPLATE_ID,SUBJECT_ID,...)")
    p.add_argument("--probes", help="with --csv: the 1:N probe CSV")
    p.add_argument(
        "--pooling",
        nargs="+",
        default=["media", "mean", "quality"],
        choices=POOLINGS.names(),
        help="the first heads the summary",
    )
    p.add_argument("--quality", help="per-image quality file, 'name ... score' lines (default: feature norms)")
    p.add_argument("--make-from", help="first write an IJB-layout set at ROOT from this identity-folder tree")
    p.add_argument("--min-images", type=int, default=4, help="with --make-from: people with at least this many images")
    add_eval_arguments(p)
