"""Pose commands: data pose (yaw, pitch, roll of every face of an aligned tree), data
cross-pose-pairs (a verification pair set of large yaw differences)."""

from __future__ import annotations

import argparse
import json

from facerec.cli.registry import command


def run_pose(args: argparse.Namespace) -> int:
    from facerec.align.pose_files import tree_poses

    summary = tree_poses(args.tree, pad_fraction=args.pad)
    print(json.dumps({k: summary[k] for k in ("images", "with_pose", "without_face", "this_run")}, indent=1))
    print(f"yaw quantiles: {summary['yaw'].get('quantiles')}")
    print(f"poses in {summary['pose_file']} (summary: pose_summary.json, histogram: pose_yaw.png)")
    return 0


@command(
    "data pose",
    "head yaw/pitch/roll of every face of a tree of aligned crops, into TREE/pose.tsv (resumable)",
    run_pose,
)
def _pose_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("tree", help="aligned crops (e.g. made by `facerec align`); TREE/landmarks.tsv is used when there")
    p.add_argument("--pad", type=float, default=0.2, help="border added around a crop before detection (of its side)")


def run_cross_pose_pairs(args: argparse.Namespace) -> int:
    from facerec.eval.cross_pose import make_cross_pose_pairs

    summary = make_cross_pose_pairs(
        args.tree, args.out, args.pose, args.people, args.folds, args.labels,
        args.min_yaw_diff, args.per_person, args.tolerance, args.seed,
    )  # fmt: skip
    genuine, impostor = summary["genuine_yaw_difference"], summary["impostor_yaw_difference"]
    print(f"{summary['pairs']} pairs ({summary['genuine']} genuine) of {summary['people']} people in ten folds")
    medians = genuine["quantiles"]["0.5"], impostor["quantiles"]["0.5"]
    print("median |yaw difference|: genuine {:.1f}, impostor {:.1f}".format(*medians))
    print(f"wrote {args.out}, .json and .png beside it; evaluate: facerec eval pairs {args.out} [--detector none]")
    return 0


@command(
    "data cross-pose-pairs",
    "a verification pair set of large yaw differences, in ten identity-disjoint folds (pairs CSV)",
    run_cross_pose_pairs,
)
def _cross_pose_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("tree", help="aligned crops: identity folders, or a flat folder with --labels")
    p.add_argument("--out", required=True, help="the pairs CSV (OUT.json and OUT.png beside it)")
    p.add_argument("--pose", help="pose file (default TREE/pose.tsv, from `facerec data pose`)")
    p.add_argument("--min-yaw-diff", type=float, default=25.0, help="smallest |yaw difference| of a pair (degrees)")
    p.add_argument("--people", help="only these people: one name a line, or an LFW people.txt with --folds")
    p.add_argument("--folds", type=int, nargs="+", help="with an LFW people.txt: the people of these folds (0-based)")
    p.add_argument("--labels", help="'file identity' lines for a flat tree (e.g. CelebA's identity_CelebA.txt)")
    p.add_argument("--per-person", type=int, default=10, help="most genuine pairs of one person")
    p.add_argument("--tolerance", type=float, default=2.5, help="impostor yaw difference within this of its genuine's")
    p.add_argument("--seed", type=int, default=0)
