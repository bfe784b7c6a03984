"""facerec data near-duplicates: training images that are (nearly) the same photo as an
evaluation image, found by perceptual hash and embedding cosine."""

from __future__ import annotations

import argparse

from facerec.cli.pipeline_options import add_pipeline_arguments, pipeline_from
from facerec.cli.registry import command

DESCRIPTION = (
    "Find near-duplicate photos between a training tree and evaluation sets, by 64-bit DCT pHash "
    "(Hamming distance) and by the model's embedding cosine (top-1 per evaluation image). Pass ALIGNED "
    "crops on both sides (e.g. trees written by `facerec align`): the hash compares pixels in one "
    "frame, and the embeddings are taken without detection. Thresholds calibrated on LFW people folds "
    "0-8 vs fold 9 (no shared person): no fold-9 image has an unrelated training photo within 4 bits (11 of "
    "1,783 within 6) or above cosine 0.922 with the fast model, while JPEG or 90%-resized copies of a crop stay "
    "within 2 bits and above 0.985, 1-px-shifted ones within 4 bits (median) and above 0.952; see "
    "docs/benchmarks.md."
)


def run_near_duplicates(args: argparse.Namespace) -> int:
    from facerec.data.duplicates import write_clean_tree
    from facerec.eval.near_duplicates import find_near_duplicates

    pipeline = pipeline_from(args, flip=False)
    report, flagged, paths = find_near_duplicates(
        args.train,
        args.eval_sets,
        args.out,
        pipeline,
        args.hash_distance,
        args.cosine,
        cache=args.cache,
        hash_min_cosine=args.hash_min_cosine,
    )
    for name, counts in report["sets"].items():
        print(
            f"{name}: {counts['pairs_phash']} pairs by pHash, {counts['pairs_cosine']} by cosine, "
            f"{counts['pairs_combined']} combined; {counts['train_files_flagged']} training files flagged"
        )
    print(f"{report['train_files_flagged']} of {report['train_images']} training files flagged; report in {args.out}")
    if args.write_clean:
        kept = write_clean_tree(args.train, paths, flagged, args.write_clean)
        print(f"clean training tree: {kept} links in {args.write_clean}")
    return 0


@command("data near-duplicates", DESCRIPTION, run_near_duplicates)
def _near_duplicates_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("train", help="training tree of ALIGNED crops (flat or identity folders; linked folders followed)")
    p.add_argument("eval_sets", nargs="+", metavar="EVAL_SET", help="evaluation folders of ALIGNED crops")
    p.add_argument("--out", required=True, help="folder for near_duplicates.json, the CSV and the PNGs")
    p.add_argument(
        "--hash-distance", type=int, default=4, help="largest pHash Hamming distance (bits of 64; always even)"
    )
    p.add_argument("--cosine", type=float, default=0.95, help="smallest embedding cosine of a duplicate")
    p.add_argument(
        "--hash-min-cosine",
        type=float,
        default=0.8,
        help="a pHash match counts only when the embeddings agree this much (-1: hash alone)",
    )
    p.add_argument("--write-clean", metavar="DST", help="write DST: the training tree as links, flagged files left out")
    p.add_argument("--cache", help="folder keeping each set's hashes and embeddings for later runs")
    add_pipeline_arguments(p, model="fast", detector="none")
