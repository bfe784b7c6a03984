"""Near-duplicate images between a training tree and evaluation sets, by two tests: the
perceptual hash (facerec.data.duplicates: the same photo, re-encoded, resized, slightly shifted)
and the embedding cosine of a recognition model (the same photo that the hash misses: another
crop, colour change, mirror). A training file is flagged when either test pairs it with an
image of any evaluation set; the flagged files can be left out of a clean training tree.

Both sides must be crops aligned the same way (e.g. by `facerec align`): the hash compares
pixels in one frame, and the embeddings are taken without detection (detector 'none').

Default thresholds, calibrated on LFW (docs/benchmarks.md, "Issue 19: near-duplicates";
benchmarks/near_duplicate_calibration.py). LFW people folds 0-8 and fold 9 share no person, so
each fold-9 image's nearest training image is an unrelated photo. Aligned faces share one
template, so their hashes are closer than those of random photos: 11 of the 1,783 fold-9 images
have an unrelated training image within 6 bits, none within 4 (distances are even: every hash
has 32 bits set). Edited copies of an aligned crop: JPEG q70 or resizing moves <= 2 bits, a 1 px
shift 4 bits (median; up to 10), a 2 px shift 8 (up to 14), a mirror image ~32. Hence 4 bits.
The fast model's largest cosine between a fold-9 image and a training image is 0.922 (twins,
Tamara and Tia Mowry), while JPEG or 90%-resized copies score >= 0.985, 1-px shifts >= 0.952 and
2-px shifts 0.964 (median): hence 0.95, which also flags 7 of the 146,866 pairs of two files of
one person within fold 9. A hash match must also reach cosine 0.8 (`hash_min_cosine`): every
edited copy the hash finds scores >= 0.88, while the hash's chance matches between different
people (LFW vs CACD-VS and CelebA vs CACD-VS/FG-NET at 4 bits, LFW folds at 6) scored <= 0.79.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from facerec.core.files import atomic_path, save_npz, write_json
from facerec.core.images import decode_image
from facerec.core.plots import pyplot, save_figure
from facerec.data.duplicates import (
    Matches,
    eval_chunks,
    gray_thumbnail,
    hamming,
    hash_matches,
    phash_of_gray,
    tree_images,
)
from facerec.data.transforms import to_tensor
from facerec.errors import DataError
from facerec.pipeline import RecognitionPipeline

EXAMPLES = 8  # pairs shown side by side in the PNG


@dataclass
class Side:
    """One set of aligned crops: its files, their hashes and embeddings (L2-normalized rows)."""

    name: str
    root: Path
    paths: list[Path]
    hashes: np.ndarray
    embeddings: np.ndarray


@dataclass
class SetResult:
    """The pairs found between the training tree and one evaluation set."""

    name: str
    by_hash: Matches
    by_cosine: Matches
    nearest_hamming: np.ndarray  # per eval image: smallest distance to any training image
    nearest_cosine: np.ndarray  # per eval image: largest cosine with any training image
    hash_rejected: int = 0  # hash matches whose embeddings disagree (chance matches of aligned faces)
    pairs: list[dict[str, Any]] = field(default_factory=list)


def load_side(
    root: str | Path, pipeline: RecognitionPipeline, progress: bool = True, cache: Path | None = None
) -> Side:
    """Hash and embed every image under `root` (aligned crops), each image decoded once; with
    `cache`, reuse the hashes and embeddings of an earlier run over the same files and model."""
    paths = tree_images(root, "aligned image folder")
    name = Path(root).name
    cached = cache / f"{name}-{_cache_key(root, pipeline)}.npz" if cache else None
    if cached and cached.is_file():
        with np.load(cached) as stored:
            if stored["paths"].tolist() == [str(p) for p in paths]:
                return Side(name, Path(root), paths, stored["hashes"], stored["embeddings"])
    hashes, embeddings = _hash_and_embed(paths, pipeline, progress, name)
    if cached:
        save_npz(cached, paths=np.array([str(p) for p in paths]), hashes=hashes, embeddings=embeddings)
    return Side(name, Path(root), paths, hashes, embeddings)


def _cache_key(root: str | Path, pipeline: RecognitionPipeline) -> str:
    described = pipeline.describe()
    key = f"{Path(root).resolve()}|{described.get('model_digest', pipeline.name)}|{pipeline.flip}"
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _hash_and_embed(
    paths: list[Path], pipeline: RecognitionPipeline, progress: bool, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """pHash and embedding of every file (no flip pass unless the pipeline asks for it)."""
    hashes = np.empty(len(paths), dtype=np.uint64)
    parts: list[np.ndarray] = []
    step = pipeline.batch_size
    bar = tqdm(total=len(paths), desc=f"pHash + embedding {name}", unit="img", disable=not progress)
    for start in range(0, len(paths), step):
        crops = []
        for i, path in enumerate(paths[start : start + step], start):
            image = decode_image(path)
            hashes[i] = phash_of_gray(gray_thumbnail(Image.fromarray(image)))
            crops.append(to_tensor(pipeline.align(image).crop))
        parts.append(pipeline.embed_tensors(torch.stack(crops)).cpu().numpy().astype(np.float32))
        bar.update(len(crops))
    bar.close()
    return hashes, np.concatenate(parts)


def cosine_top1(train: np.ndarray, evaluation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each eval row, the training row of largest cosine and that cosine (rows L2-normalized),
    by chunked matrix products so that memory stays bounded."""
    train_t = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32))
    best = np.empty(len(evaluation), dtype=np.int64)
    score = np.empty(len(evaluation), dtype=np.float64)
    for rows in eval_chunks(len(train), len(evaluation)):
        sims = torch.from_numpy(np.ascontiguousarray(evaluation[rows], dtype=np.float32)) @ train_t.T
        values, index = sims.max(dim=1)
        best[rows], score[rows] = index.numpy(), values.double().numpy()
    return best, score


def compare(
    train: Side, evaluation: Side, max_distance: int, min_cosine: float, hash_min_cosine: float = -1.0
) -> SetResult:
    """Both tests between the training side and one evaluation side, pairs merged. A hash
    match counts only when the two embeddings agree at least `hash_min_cosine`: aligned faces
    share one template, so different people's crops can hash a few bits apart."""
    by_hash, nearest_hamming = hash_matches(train.hashes, evaluation.hashes, max_distance)
    agreement = np.einsum("ij,ij->i", train.embeddings[by_hash.train], evaluation.embeddings[by_hash.eval])
    kept = agreement >= hash_min_cosine
    confirmed = Matches(by_hash.train[kept], by_hash.eval[kept], by_hash.score[kept])
    best, cosine = cosine_top1(train.embeddings, evaluation.embeddings)
    hit = np.nonzero(cosine >= min_cosine)[0]
    by_cosine = Matches(best[hit], hit, cosine[hit])
    result = SetResult(evaluation.name, confirmed, by_cosine, nearest_hamming, cosine, int((~kept).sum()))
    result.pairs = _merged_pairs(train, evaluation, confirmed, by_cosine)
    return result


def _merged_pairs(train: Side, evaluation: Side, by_hash: Matches, by_cosine: Matches) -> list[dict[str, Any]]:
    """One record per distinct (train, eval) pair found by either test, with both scores."""
    methods: dict[tuple[int, int], list[str]] = {}
    for method, found in (("phash", by_hash), ("cosine", by_cosine)):
        for t, e in zip(found.train.tolist(), found.eval.tolist(), strict=True):
            methods.setdefault((t, e), []).append(method)
    pairs = []
    for (t, e), found_by in sorted(methods.items(), key=lambda item: (item[0][1], item[0][0])):
        pairs.append(
            {
                "train": str(train.paths[t]),
                "eval": str(evaluation.paths[e]),
                "hamming": int(hamming(train.hashes[t], evaluation.hashes[e])),
                "cosine": round(float(train.embeddings[t] @ evaluation.embeddings[e]), 5),
                "methods": found_by,
            }
        )
    return pairs


# ---- outputs ------------------------------------------------------------------------------------
def flagged_files(results: list[SetResult]) -> set[Path]:
    """Every training file paired with an image of any evaluation set."""
    return {Path(pair["train"]) for result in results for pair in result.pairs}


def summary(
    train: Side, results: list[SetResult], max_distance: int, min_cosine: float, model: str, hash_min_cosine: float
) -> dict:
    """The JSON report: thresholds, counts per evaluation set and method, and every pair."""
    sets = {}
    for r in results:
        sets[r.name] = {
            "eval_images": len(r.nearest_hamming),
            "pairs_phash": len(r.by_hash.train),
            "pairs_phash_rejected_by_embedding": r.hash_rejected,
            "pairs_cosine": len(r.by_cosine.train),
            "pairs_combined": len(r.pairs),
            "pairs_both": sum(len(p["methods"]) == 2 for p in r.pairs),
            "train_files_flagged": len({p["train"] for p in r.pairs}),
            "eval_images_matched": len({p["eval"] for p in r.pairs}),
            "nearest_hamming_min": int(r.nearest_hamming.min()),
            "nearest_hamming_percentiles_1_5_50": np.percentile(r.nearest_hamming, [1, 5, 50]).tolist(),
            "nearest_cosine_max": float(r.nearest_cosine.max()),
            "nearest_cosine_percentiles_50_95_99": np.percentile(r.nearest_cosine, [50, 95, 99]).tolist(),
            "pairs": r.pairs,
        }
    return {
        "train": str(train.root),
        "train_images": len(train.paths),
        "model": model,
        "hash_distance": max_distance,
        "cosine": min_cosine,
        "hash_min_cosine": hash_min_cosine,
        "train_files_flagged": len(flagged_files(results)),
        "sets": sets,
    }


def write_flagged_csv(path: Path, results: list[SetResult]) -> Path:
    """One row per pair, training file first: what a cleaning step or a reviewer reads."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["train_file", "eval_set", "eval_file", "hamming", "cosine", "methods"])
        for r in results:
            for p in r.pairs:
                writer.writerow([p["train"], r.name, p["eval"], p["hamming"], p["cosine"], "+".join(p["methods"])])
    return path


def plot_examples(path: Path, results: list[SetResult]) -> Path | None:
    """A few flagged pairs side by side (training image left), the closest by hash first."""
    pairs = sorted((p for r in results for p in r.pairs), key=lambda p: (p["hamming"], -p["cosine"]))[:EXAMPLES]
    if not pairs:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(2, len(pairs), figsize=(1.8 * len(pairs), 4.0), squeeze=False)
    for column, pair in enumerate(pairs):
        for row, key in enumerate(("train", "eval")):
            axes[row, column].imshow(decode_image(pair[key]))
            axes[row, column].set_xticks([]), axes[row, column].set_yticks([])
            axes[row, column].set_title(Path(pair[key]).name[:18], fontsize=6)
        axes[1, column].set_xlabel(f"H={pair['hamming']} cos={pair['cosine']:.3f}", fontsize=7)
    axes[0, 0].set_ylabel("training")
    axes[1, 0].set_ylabel("evaluation")
    return save_figure(fig, path)


def plot_nearest(path: Path, results: list[SetResult], max_distance: int, min_cosine: float) -> Path:
    """Each eval image's nearest training image, by hash and by cosine, with the thresholds:
    the distributions the thresholds are read from."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in results:
        left.hist(r.nearest_hamming, bins=np.arange(0, 34) - 0.5, histtype="step", label=r.name)
        right.hist(r.nearest_cosine, bins=60, histtype="step", label=r.name)
    left.axvline(max_distance + 0.5, color="k", ls="--", lw=1)
    right.axvline(min_cosine, color="k", ls="--", lw=1)
    left.set_xlabel("smallest Hamming distance to a training image")
    right.set_xlabel("largest cosine with a training image")
    for ax in (left, right):
        ax.set_ylabel("evaluation images")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def find_near_duplicates(
    train_root: str | Path,
    eval_roots: list[str | Path],
    out: str | Path,
    pipeline: RecognitionPipeline,
    max_distance: int = 4,
    min_cosine: float = 0.95,
    progress: bool = True,
    cache: str | Path | None = None,
    hash_min_cosine: float = 0.8,
) -> tuple[dict, set[Path], list[Path]]:
    """Compare a training tree with every evaluation set; write near_duplicates.json,
    flagged_train_files.csv, examples.png and nearest.png to `out` (hashes and embeddings kept
    in `cache` for later runs when given). Returns the report, the
    flagged training files, and the training tree's files."""
    if not 0 <= max_distance <= 64:
        raise DataError(f"--hash-distance must be within 0..64 bits, got {max_distance}")
    if not -1.0 <= min_cosine <= 1.0:
        raise DataError(f"--cosine must be within -1..1, got {min_cosine}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    train = load_side(train_root, pipeline, progress, cache)
    sides = [load_side(root, pipeline, progress, cache) for root in eval_roots]
    _unique_names(sides)
    results = [compare(train, side, max_distance, min_cosine, hash_min_cosine) for side in sides]
    report = summary(train, results, max_distance, min_cosine, pipeline.name, hash_min_cosine)
    write_json(out / "near_duplicates.json", report)
    write_flagged_csv(out / "flagged_train_files.csv", results)
    plot_examples(out / "examples.png", results)
    plot_nearest(out / "nearest.png", results, max_distance, min_cosine)
    return report, flagged_files(results), train.paths


def _unique_names(sides: list[Side]) -> None:
    """Evaluation sets named by their folder; two folders of one name get their order appended."""
    seen: dict[str, int] = {}
    for side in sides:
        count = seen[side.name] = seen.get(side.name, 0) + 1
        if count > 1:
            side.name = f"{side.name}-{count}"
