"""A pair protocol's accuracy and yaw-difference breakdown from embeddings computed before.

The reference model runs at ~10 faces/s on two CPU cores; when an earlier `facerec eval` (or
`facerec benchmark`) already embedded a protocol's images with it, the same numbers follow from
its `embeddings.npz` without embedding again: each pair's cosine, the 10-fold accuracy with each
fold's threshold chosen on the other nine, TAR@FAR, and the breakdown by |yaw difference| of the
pose file. Images missing from the .npz are an error, not skipped.

    python benchmarks/rescore_pairs.py --lfw ../shared/data/lfw --folds 9 \\
        --embeddings runs/lfw_pipeline_dlib_mtcnn/embeddings.npz --pose data/lfw_mtcnn112/pose.tsv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facerec.eval.pose_breakdown import breakdown_lines, pose_report
from facerec.eval.protocols import build_protocol, pair_summary
from facerec.eval.report import verification_metrics
from facerec.pipeline import stored_rows


def rows_of(images: list, npz: Path) -> tuple[np.ndarray, np.ndarray]:
    stored = np.load(npz)
    index = stored_rows(stored["names"], images, npz)
    return stored["plain"][index], stored["flipped"][index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", required=True, help="LFW root (images/ and meta/)")
    parser.add_argument("--folds", type=int, nargs="+", default=[9])
    parser.add_argument("--embeddings", type=Path, required=True, help="an eval's embeddings.npz")
    parser.add_argument("--pose", type=Path, required=True, help="pose.tsv of the images")
    parser.add_argument("--out", type=Path, help="write the report here as JSON")
    args = parser.parse_args()
    pairs = build_protocol("lfw", {"root": args.lfw, "folds": args.folds}).pairs
    plain, flipped = rows_of(pairs.images, args.embeddings)
    scores = {"no_flip": pairs.scores(plain), "flip": pairs.scores(flipped)}
    metrics = {key: verification_metrics(s, pairs.same, pairs.fold) for key, s in scores.items()}
    report = {key: pair_summary(m) for key, m in metrics.items()}
    report["pose"] = pose_report(pairs, args.pose, scores, metrics)
    for key in ("no_flip", "flip"):
        print(f"{key}: accuracy {report[key]['accuracy']:.4f} over {len(pairs)} pairs")
        print("\n".join(breakdown_lines(report["pose"][key])))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
