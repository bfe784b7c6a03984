"""Distillation commands: distill-targets, compact."""

from __future__ import annotations

import argparse
from pathlib import Path

from facerec.cli.registry import command


def run_distill_targets(args: argparse.Namespace) -> int:
    from facerec.distill.targets import write_targets

    reuse = [Path(p) for p in args.reuse or []]
    out = write_targets(
        args.tree, args.out, args.teacher, args.detector, args.source_root, reuse, args.device, not args.no_mirror
    )
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
    p.add_argument(
        "--no-mirror", action="store_true", help="embed each image once, not also its mirror (half the teacher's time)"
    )


def run_compact(args: argparse.Namespace) -> int:
    from facerec.distill.compact import compact_tree

    targets = [Path(p) for p in args.targets or []]
    poses = [Path(p) for p in args.poses or []]
    copy = compact_tree(args.src, args.dst, args.size, args.quality, targets, args.one_identity_per_image, poses=poses)
    print(
        f"{copy.images} images of {copy.identities} identities in {copy.root} "
        f"({copy.bytes / 2**20:.1f} MiB of WebP at {args.size} px)"
        + (
            f"; teacher embeddings in {copy.targets} (relative names: train with distill.targets={copy.targets})"
            if copy.targets
            else ""
        )
        + (f"; poses in {copy.poses} ({copy.without_pose} images without one)" if copy.poses else "")
    )
    return 0


@command(
    "compact",
    "copy a training tree at the model's input size as WebP (about 1 KB a 64 px face), with its teacher targets",
    run_compact,
)
def _compact_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="identity-folder tree of aligned crops (or, with --one-identity-per-image, any folder)")
    p.add_argument("dst", help="new folder: DST/<identity>/<stem>.webp (and DST/targets.npz)")
    p.add_argument("--size", type=int, default=64, help="side in pixels (the student's input)")
    p.add_argument("--quality", type=int, default=90, help="WebP quality (90: mean error under 2 grey levels at 64 px)")
    p.add_argument("--targets", nargs="*", help="teacher embeddings .npz of SRC's images (`facerec distill-targets`)")
    p.add_argument(
        "--poses",
        nargs="*",
        help="pose.tsv files of SRC's images (`facerec data pose`): DST/pose.tsv, for data.augment.pose3d",
    )
    p.add_argument(
        "--one-identity-per-image",
        action="store_true",
        help="unlabelled faces (e.g. UTKFace): each image its own identity",
    )
