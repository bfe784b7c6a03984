"""Using a model: verify, enroll, identify, embed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facerec.cli.pipeline_options import MODEL_HELP, add_pipeline_arguments, add_runtime_argument, pipeline_from
from facerec.cli.registry import command
from facerec.cli.store_options import add_store_arguments, store_from
from facerec.serve.recognizer import FaceRecognizer


def recognizer(args: argparse.Namespace) -> FaceRecognizer:
    quality = getattr(args, "quality", "stability")
    return FaceRecognizer(
        args.model, args.detector, threshold=args.threshold, device=args.device, runtime=args.runtime, quality=quality
    )


def add_quality_arguments(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--min-quality", type=float, help=f"refuse {what} whose face quality (0-1) is below this")
    p.add_argument("--quality", default="stability", help="face quality scorer: stability, feature_norm or detector")


def add_use_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help=MODEL_HELP)
    p.add_argument("--detector", default="mtcnn", help="mtcnn or dlib")
    p.add_argument("--threshold", type=float, help="cosine threshold (default: the model card's for this detector)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    add_runtime_argument(p)


def run_verify(args: argparse.Namespace) -> int:
    result = recognizer(args).verify(args.image1, args.image2)
    verdict = "same person" if result.same else "different people"
    print(f"score {result.score:.4f} (threshold {result.threshold:.4f}): {verdict}")
    return 0 if result.same else 1


@command("verify", "are two face images the same person? (exit 0 yes, 1 no, 2 error)", run_verify)
def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image1")
    p.add_argument("image2")
    add_use_arguments(p)


def run_enroll(args: argparse.Namespace) -> int:
    with store_from(args) as store:  # first: a missing key is refused before the model loads
        enroll = recognizer(args).enroll_tree
        report = enroll(store, args.gallery_name, args.dir, args.name, args.min_quality, args.keep_crops)
        people = store.counts(args.gallery_name).subjects
    for line in report.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    where = f"gallery '{args.gallery_name}' of {args.store}"
    print(f"enrolled {report.added} images ({people} people in {where}); {len(report.skipped)} skipped")
    return 0


@command("enroll", "add faces to a gallery: DIR/<person>/<image> (or DIR of one person with --name)", run_enroll)
def _enroll_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir")
    add_store_arguments(p)
    p.add_argument("--name", help="all images of DIR belong to this person")
    p.add_argument(
        "--keep-crops",
        action="store_true",
        help="a new gallery keeps each face's aligned crop, sealed like the vectors (a later model can "
        "re-embed them: `facerec gallery migrate`)",
    )
    add_use_arguments(p)
    add_quality_arguments(p, "images")


def run_identify(args: argparse.Namespace) -> int:
    with store_from(args, create=False) as store:
        found = recognizer(args).identify(store, args.gallery_name, args.image, args.top, args.min_quality)
    print(f"{found.name or 'unknown'} (best score {found.score:.4f}, threshold {found.threshold:.4f})")
    for match in found.matches:
        print(f"  {match.subject:30s} {match.score:.4f}")
    return 0 if found.name is not None else 1


@command("identify", "who is this? search a gallery (exit 0 known, 1 unknown, 2 error)", run_identify)
def _identify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")
    add_store_arguments(p)
    p.add_argument("--top", type=int, default=5)
    add_use_arguments(p)
    add_quality_arguments(p, "a probe")


def run_embed(args: argparse.Namespace) -> int:
    from facerec.core.images import expand_inputs
    from facerec.pipeline import write_embeddings

    pipeline = pipeline_from(args, several="largest", missing="center", flip=args.flip)
    paths = expand_inputs(args.inputs)
    out, index = write_embeddings(Path(args.out), paths, pipeline.embed(paths).get(args.flip))
    print(f"wrote {len(paths)} embeddings to {out} (image paths in {index})")
    return 0


@command("embed", "compute L2-normalized embeddings of images with a model", run_embed)
def _embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image files, or one folder (every image under it)")
    add_pipeline_arguments(p, model=None, detector="none", degrade=True)
    p.add_argument("--out", default="embeddings.npy", help="output .npy (paths go to the .json beside it)")
    p.add_argument("--flip", action="store_true", help="add the mirrored image's embedding")
