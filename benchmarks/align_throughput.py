"""Face alignment and reference-model embedding throughput on real LFW images.

Aligns N LFW images with `facerec align` (MTCNN and dlib HOG, W worker processes) and embeds
the aligned dlib chips with the dlib ResNet reference model. Prints a Markdown table.

    python benchmarks/align_throughput.py --lfw ../shared/data/lfw --images 400 --workers 2
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from facerec.align.pipeline import AlignPolicy, align_tree
from facerec.pipeline import RecognitionPipeline


def sample_tree(lfw: Path, n: int, dst: Path) -> list[Path]:
    """The first n images of LFW in name order, copied into an identity-folder tree."""
    images = sorted((lfw / "images").glob("*/*.jpg"))[:n]
    for path in images:
        (dst / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dst / path.parent.name / path.name)
    return images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lfw", default="../shared/data/lfw")
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    print(f"machine: {platform.machine()}, {args.workers} worker processes, torch {torch.__version__}\n")
    print("| stage | images | seconds | images/s | detected |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        images = sample_tree(Path(args.lfw), args.images, src)
        for detector in ("mtcnn", "dlib"):
            dst = Path(tmp) / detector
            start = time.perf_counter()
            summary = align_tree(
                src, dst, detector, policy=AlignPolicy(missing="skip"), workers=args.workers, progress=False
            )
            seconds = time.perf_counter() - start
            print(
                f"| align, {detector} detector + 5 landmarks + warp to 112x112 | {len(images)} | {seconds:.1f} | "
                f"{len(images) / seconds:.1f} | {summary['aligned']} |"
            )
        torch.set_num_threads(args.workers)
        pipeline = RecognitionPipeline.load("dlib", detector="none", device="cpu")
        chips = [str(p) for p in sorted((Path(tmp) / "mtcnn").rglob("*.jpg"))]
        start = time.perf_counter()
        pipeline.embed(chips, progress=False)
        seconds = time.perf_counter() - start
        # the pipeline's embed runs the model twice per image (plain and mirrored)
        print(
            f"| embed, dlib ResNet (150x150 input, 2 passes: image + mirror) | {len(chips)} | {seconds:.1f} | "
            f"{2 * len(chips) / seconds:.1f} (single passes) | - |"
        )


if __name__ == "__main__":
    main()
