"""Where to put the near-duplicate thresholds: how far edited copies of the same aligned crop
move (pHash bits, embedding cosine), and how close different photos of the same person come
(cosine; a duplicate threshold must stay above them). Run on LFW fold 9's aligned crops; the
unrelated-photo side (nearest training image of each fold-9 image, different people) is the
report of `facerec data near-duplicates` itself (nearest.png, nearest_* in the JSON).

    OMP_NUM_THREADS=1 python benchmarks/near_duplicate_calibration.py data/lfw_people_9 \\
        --cache /tmp/nd-cache --sample 200 --out docs/near_duplicates/calibration.json
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from facerec.core.files import write_json
from facerec.core.images import decode_image
from facerec.data.duplicates import gray_thumbnail, hamming, phash_of_gray
from facerec.data.transforms import to_tensor
from facerec.eval.near_duplicates import Side, load_side
from facerec.pipeline import RecognitionPipeline

Edit = Callable[[np.ndarray], np.ndarray]


def jpeg(image: np.ndarray, quality: int = 70) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    size = image.shape[0]
    small = Image.fromarray(image).resize((int(size * factor),) * 2, Image.Resampling.BILINEAR)
    return np.asarray(small.resize((size, size), Image.Resampling.BILINEAR))


def shift(image: np.ndarray, pixels: int) -> np.ndarray:
    size = image.shape[0]
    return np.pad(image, ((pixels, 0), (pixels, 0), (0, 0)), mode="edge")[:size, :size]


EDITS: dict[str, Edit] = {
    "jpeg q70": jpeg,
    "resize 90% and back": lambda a: rescale(a, 0.9),
    "resize 50% and back": lambda a: rescale(a, 0.5),
    "shift 1 px": lambda a: shift(a, 1),
    "shift 2 px": lambda a: shift(a, 2),
    "jpeg + resize 90% + shift 1 px": lambda a: jpeg(shift(rescale(a, 0.9), 1)),
    "mirror": lambda a: np.ascontiguousarray(a[:, ::-1]),
}


def percentiles(values: np.ndarray, at: tuple[float, ...]) -> dict[str, float]:
    return {f"p{q:g}": round(float(np.percentile(values, q)), 4) for q in at} | {
        "min": round(float(values.min()), 4),
        "max": round(float(values.max()), 4),
    }


def edited_copies(paths: list[Path], pipeline: RecognitionPipeline) -> dict[str, dict]:
    """Per edit: Hamming distance and cosine between each crop and its edited copy."""
    scores: dict[str, tuple[list[int], list[float]]] = {name: ([], []) for name in EDITS}
    for path in tqdm(paths, desc="edited copies", unit="img"):
        image = decode_image(path)
        copies = [edit(image) for edit in EDITS.values()]
        crops = torch.stack([to_tensor(pipeline.align(a).crop) for a in [image, *copies]])
        emb = pipeline.embed_tensors(crops).cpu().numpy()
        original = phash_of_gray(gray_thumbnail(Image.fromarray(image)))
        for k, (name, copy) in enumerate(zip(EDITS, copies, strict=True)):
            scores[name][0].append(int(hamming(original, phash_of_gray(gray_thumbnail(Image.fromarray(copy))))))
            scores[name][1].append(float(emb[0] @ emb[k + 1]))
    return {
        name: {
            "hamming": percentiles(np.array(h), (50, 95, 99)),
            "cosine": percentiles(np.array(c), (1, 5, 50)),
        }
        for name, (h, c) in scores.items()
    }


def same_person_cosines(side: Side) -> np.ndarray:
    """Cosine of every pair of different images of one person (folder) in the set."""
    people = np.array([p.parent.name for p in side.paths])
    values = []
    for person in np.unique(people):
        rows = side.embeddings[people == person]
        sims = rows @ rows.T
        values.extend(sims[np.triu_indices(len(rows), 1)].tolist())
    return np.array(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree", help="aligned identity-folder tree (LFW fold 9)")
    parser.add_argument("--model", default="fast")
    parser.add_argument("--cache", help="the near-duplicates --cache folder (reuses its embeddings)")
    parser.add_argument("--sample", type=int, default=200, help="images edited (every k-th)")
    parser.add_argument("--out", required=True, help="JSON report")
    args = parser.parse_args()
    pipeline = RecognitionPipeline.load(args.model, "auto", detector="none", flip=False)
    side = load_side(args.tree, pipeline, cache=Path(args.cache) if args.cache else None)
    step = max(1, len(side.paths) // args.sample)
    same = same_person_cosines(side)
    report = {
        "tree": args.tree,
        "model": pipeline.name,
        "images": len(side.paths),
        "edited_sample": len(side.paths[::step][: args.sample]),
        "edits": edited_copies(side.paths[::step][: args.sample], pipeline),
        "same_person_different_photo_cosine": percentiles(same, (50, 99, 99.9)) | {"pairs": len(same)},
        "same_person_pairs_above": {str(t): int((same >= t).sum()) for t in (0.9, 0.93, 0.95, 0.97)},
    }
    write_json(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
