"""Data commands: synth, pack, morphs, lfw-people, align, utkface-labels, celeba-tree."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facerec.cli.registry import command


def run_synth(args: argparse.Namespace) -> int:
    from facerec.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(args.identities, args.images, args.size, args.seed, args.difficulty)
    root = faces.write_tree(args.dst)
    print(f"wrote {len(faces)} images of {args.identities} identities to {root}")
    return 0


@command("synth", "write synthetic faces as an identity-folder tree", run_synth)
def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dst")
    p.add_argument("--identities", type=int, default=20)
    p.add_argument("--images", type=int, default=5, help="images per identity")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", type=float, default=1.0, help="scale of the nuisance (pose, light, blur...)")


def run_pack(args: argparse.Namespace) -> int:
    from facerec.data.recordio import pack_folder

    rec, idx = pack_folder(args.src, args.prefix)
    print(f"wrote {rec} and {idx}")
    return 0


@command("pack", "pack an identity-folder tree into insightface's RecordIO format (PREFIX.rec + PREFIX.idx)", run_pack)
def _pack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src")
    p.add_argument("prefix", help="e.g. data/train (writes data/train.rec and data/train.idx)")


def run_morphs(args: argparse.Namespace) -> int:
    from facerec.data.morphs import write_morphs

    root = write_morphs(args.src, args.dst, args.count, args.seed, (args.min_weight, args.max_weight))
    print(f"{args.count} morphs of {args.src} in {root}; label them with `facerec distill-targets {root}`")
    return 0


@command("morphs", "blend aligned faces of two different people: unlabelled faces for distillation", run_morphs)
def _morphs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="identity-folder tree of aligned crops")
    p.add_argument("dst", help="new tree, one folder per morph (resumes)")
    p.add_argument("--count", type=int, required=True, help="number of morphs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-weight", type=float, default=0.35, help="smallest weight of the first face")
    p.add_argument("--max-weight", type=float, default=0.65, help="largest weight of the first face")


def run_lfw_people(args: argparse.Namespace) -> int:
    from facerec.data.lfw import link_people, people_of_folds

    chosen = people_of_folds(Path(args.lfw) / "meta" / "people.txt", args.folds)
    linked, images = link_people(args.src, args.dst, chosen, args.min_images)
    print(f"{linked} people ({images} images) of LFW people folds {args.folds} linked under {args.dst}")
    return 0


@command(
    "lfw-people",
    "link the people of some LFW View 2 people folds (identity-disjoint) into a training tree",
    run_lfw_people,
)
def _lfw_people_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="identity-folder tree of LFW images (e.g. aligned by `facerec align`)")
    p.add_argument("dst", help="new tree of symbolic links")
    p.add_argument("--lfw", required=True, help="LFW root holding meta/people.txt")
    p.add_argument("--folds", type=int, nargs="+", required=True, help="0-based people folds")
    p.add_argument("--min-images", type=int, default=1, help="leave out people with fewer images")


def run_align(args: argparse.Namespace) -> int:
    from facerec.align.pipeline import AlignPolicy, align_tree

    policy = AlignPolicy(several=args.several, missing=args.missing)
    summary = align_tree(args.src, args.dst, args.detector, args.template, None, policy, args.workers)
    print(json.dumps(summary, indent=1))
    if summary["failed"]:
        print(f"{summary['failed']} images failed: see {Path(args.dst) / 'failures.tsv'}", file=sys.stderr)
    return 0


@command("align", "detect, align and crop every image of an identity-folder tree (resumable)", run_align)
def _align_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--detector", default="mtcnn", help="mtcnn or dlib")
    p.add_argument("--template", default="arcface_112", help="arcface_112 or arcface_112x96")
    p.add_argument("--several", default="central", help="several faces: central, largest or best")
    p.add_argument("--missing", default="skip", help="no face: skip (logged) or center (center crop)")
    p.add_argument("--workers", type=int, default=2)


def run_utkface_labels(args: argparse.Namespace) -> int:
    from facerec.data.face_sets import read_utkface, write_utkface_labels

    labels, malformed = read_utkface(args.src)
    written = write_utkface_labels(labels, args.out)
    print(
        f"{len(labels)} images labelled; {len(malformed)} malformed names skipped{': ' if malformed else ''}"
        f"{', '.join(malformed[:5])}{' ...' if len(malformed) > 5 else ''}"
    )
    for name, path in written.items():
        print(f"  {name}: {path}")
    return 0


@command(
    "data utkface-labels",
    "UTKFace's attributes (age_gender_race_date.jpg.chip.jpg) as group CSVs for `facerec analyze`",
    run_utkface_labels,
)
def _utkface_labels_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Writes OUT/attributes.csv (file,age,gender,race,age_group) and one file,group CSV per attribute "
        "(OUT/gender.csv, OUT/race.csv, OUT/age_group.csv), keyed by file name, so they also label an aligned copy "
        "with the same names. Names without the three attribute fields are skipped and counted. UTKFace has no "
        "identities: `analyze bias` needs people with two images each, so it cannot run on UTKFace alone; use the "
        "CSVs with `facerec analyze embeddings --images TREE --groups OUT/gender.csv` (embedding space coloured by "
        "group), or for bias on a tree whose folders are people and whose files carry UTKFace names."
    )
    p.add_argument("src", help="folder of UTKFace images (searched recursively)")
    p.add_argument("--out", required=True, help="folder for the CSVs")


def run_celeba_tree(args: argparse.Namespace) -> int:
    from facerec.data.face_sets import link_celeba_tree

    summary = link_celeba_tree(args.images, args.identity_file, args.dst)
    print(
        f"{summary.identities} identities, {summary.images} images linked under {args.dst} "
        f"({summary.already_there} already there); {len(summary.unlabelled)} files without a label"
        + (f": {', '.join(summary.unlabelled[:5])}" if summary.unlabelled else "")
    )
    return 0


@command(
    "data celeba-tree",
    "an identity-folder tree of links (no copies) from CelebA images and identity_CelebA.txt",
    run_celeba_tree,
)
def _celeba_tree_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", help="folder of CelebA images (any subset of the 202,599)")
    p.add_argument("identity_file", help="identity_CelebA.txt: 'file identity' lines")
    p.add_argument("dst", help="new tree DST/<identity>/<file> (hard links, or symbolic ones across devices)")
