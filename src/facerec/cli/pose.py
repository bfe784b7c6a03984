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
