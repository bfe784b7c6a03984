"""How faithful `facerec compact` copies are: for the first image of N random identities of the
source tree, the mean absolute pixel error of each copy against the original crop, and the cosine
between a model's embeddings of the original and of the copy (both at the model's input size).

    python benchmarks/compact_fidelity.py data/clean/lfw_people_0-8 \\
        data/gpu112/lfw_people_0-8 data/gpu/lfw_people_0-8 --model fast --people 300
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facerec.core.images import decode_image
from facerec.data.transforms import resize, to_tensor
from facerec.models.io import load_recognition_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the tree the copies were made from")
    parser.add_argument("copies", type=Path, nargs="+", help="compact copies of it (<identity>/<stem>.webp)")
    parser.add_argument("--model", default="fast")
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = load_recognition_model(args.model)
    people = sorted(p for p in args.source.iterdir() if p.is_dir())
    chosen = random.Random(args.seed).sample(people, min(args.people, len(people)))
    originals = [sorted(f for f in p.iterdir() if f.is_file())[0] for p in chosen]

    def embed(images: list[np.ndarray]) -> torch.Tensor:
        size = model.input_size
        with torch.no_grad():
            return F.normalize(model.net(torch.stack([to_tensor(resize(i, size)) for i in images])), dim=1)

    reference = [decode_image(f) for f in originals]
    base = embed(reference)
    print(f"{len(originals)} faces of {args.source}, model {model.card.short_id}\n")
    print("| copy | size | mean abs error (grey levels) | cosine to the original, mean | lowest |")
    print("|---|---|---|---|---|")
    for root in args.copies:
        copies = [decode_image(root / f.parent.name / f"{f.stem}.webp") for f in originals]
        size = copies[0].shape[0]
        pairs = zip(reference, copies, strict=True)
        error = np.mean([np.abs(resize(o, size).astype(float) - c).mean() for o, c in pairs])
        cosine = (embed(copies) * base).sum(1)
        print(f"| {root} | {size} px | {error:.2f} | {cosine.mean():.4f} | {cosine.min():.4f} |")


if __name__ == "__main__":
    main()
