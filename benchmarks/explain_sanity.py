"""The explanation maps' sanity checks (facerec.analysis.explain) over LFW View 2 same-person
pairs of one fold (default: fold 9, which the default model never trained on):

- model randomisation (Adebayo et al. 2018): Spearman rank correlation between face A's map from
  the trained network and from copies whose layers are all re-initialised (one per seed), each
  explaining its own score cos(f'(A), f'(B)). Near 0: the map depends on what the model learnt.
- deletion (Samek et al. 2017): the drop in cos(f(A), f(B)) when the k cells (of a grid of
  cell x cell pixels) where A's map is highest turn grey, against k random cells (mean of seeds).

Writes report.json (per pair and summary) and sanity.png (correlation histogram, deletion scatter).

    python benchmarks/explain_sanity.py --lfw ../shared/data/lfw --pairs 30 --out runs/explain_sanity
    python benchmarks/explain_sanity.py --aligned data/lfw_mtcnn112 --pairs 30 --out runs/explain_sanity
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from facerec.analysis.explain import (
    ExplainOptions,
    deletion_check,
    explain_face,
    randomized_copy,
    rank_correlation,
)
from facerec.core.files import write_json
from facerec.core.plots import pyplot, save_figure
from facerec.data.lfw import LFWLayout
from facerec.data.transforms import to_tensor
from facerec.eval.pairs import read_lfw_pairs
from facerec.pipeline import RecognitionPipeline


def same_pairs(lfw: Path, fold: int, count: int, aligned: Path | None) -> list[tuple[Path, Path]]:
    """The first `count` same-person pairs of `fold`; with `aligned`, the crops of the same names."""
    layout = LFWLayout.at(lfw)
    pairs = read_lfw_pairs(layout.pairs_file, layout.images)
    chosen = np.flatnonzero((pairs.fold == fold) & pairs.same)[:count]
    found = [(Path(pairs.images[pairs.left[i]]), Path(pairs.images[pairs.right[i]])) for i in chosen]
    if aligned is None:
        return found
    return [tuple(aligned / p.parent.name / p.name for p in pair) for pair in found]  # type: ignore[misc]


def check_pair(
    pipeline: RecognitionPipeline, randomised: list[RecognitionPipeline], pair: tuple[Path, Path], args: Any
) -> dict[str, Any]:
    options = ExplainOptions(steps=args.steps)
    crop_a, crop_b = (pipeline.align(image).crop for image in pair)
    embeddings = pipeline.embed_tensors(torch.stack([to_tensor(crop_a), to_tensor(crop_b)]))
    trained = explain_face(pipeline, crop_a, embeddings[1], options)
    row: dict[str, Any] = {"a": str(pair[0]), "b": str(pair[1]), "score": float(embeddings[0] @ embeddings[1])}
    random_maps = [
        explain_face(r, crop_a, r.embed_tensors(to_tensor(crop_b)[None])[0], options).maps for r in randomised
    ]
    for method, saliency in trained.maps.items():
        deletion = deletion_check(pipeline, crop_a, embeddings[1], saliency, args.cell, args.k, args.seeds)
        row[method] = {
            "rank_correlation": [rank_correlation(saliency, maps[method]) for maps in random_maps],
            "top_drop": deletion.top_drop,
            "random_drop": deletion.random_drop,
        }
    return row


def summarize(rows: list[dict[str, Any]], methods: tuple[str, ...]) -> dict[str, Any]:
    summary = {}
    for method in methods:
        rho = np.array([r[method]["rank_correlation"] for r in rows]).ravel()
        top, random = (np.array([r[method][key] for r in rows]) for key in ("top_drop", "random_drop"))
        summary[method] = {
            "rank_correlation_mean": float(rho.mean()),
            "rank_correlation_abs_max": float(np.abs(rho).max()),
            "top_drop_mean": float(top.mean()),
            "random_drop_mean": float(random.mean()),
            "pairs_top_beats_random": f"{int((top > random).sum())}/{len(rows)}",
        }
    return summary


def plot(rows: list[dict[str, Any]], methods: tuple[str, ...], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for method in methods:
        rho = np.array([r[method]["rank_correlation"] for r in rows]).ravel()
        left.hist(rho, bins=np.linspace(-1, 1, 21), alpha=0.6, label=method)
        top, random = ([r[method][key] for r in rows] for key in ("top_drop", "random_drop"))
        right.scatter(random, top, s=14, label=method)
    left.set(xlabel="rank correlation: trained vs randomised map", ylabel="maps", title="model randomisation")
    limit = max(max(r[m]["top_drop"] for r in rows for m in methods), 0.05)
    right.plot([0, limit], [0, limit], "k--", lw=1)
    right.set(xlabel="cosine drop, k random cells grey", ylabel="cosine drop, k top cells grey", title="deletion")
    for ax in (left, right):
        ax.legend()
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lfw", default="../shared/data/lfw", help="LFW root (images/ and meta/pairs.txt)")
    p.add_argument("--aligned", help="aligned crops under the same names (ArcFace template): detector none")
    p.add_argument("--model", default="default")
    p.add_argument("--fold", type=int, default=9)
    p.add_argument("--pairs", type=int, default=30)
    p.add_argument("--randomisations", type=int, default=2, help="randomised copies (seeds 0..n-1)")
    p.add_argument("--steps", type=int, default=16, help="integrated-gradients steps")
    p.add_argument("--cell", type=int, default=8, help="deletion grid cell, crop pixels")
    p.add_argument("--k", type=int, default=4, help="cells turned grey")
    p.add_argument("--seeds", type=int, default=10, help="random draws of k cells")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    aligned = Path(args.aligned) if args.aligned else None
    pipeline = RecognitionPipeline.load(
        args.model, detector="none" if aligned else "mtcnn", device="cpu", several="largest", missing="center"
    )
    randomised = [randomized_copy(pipeline, seed) for seed in range(args.randomisations)]
    pairs = same_pairs(Path(args.lfw), args.fold, args.pairs, aligned)
    rows = [check_pair(pipeline, randomised, pair, args) for pair in tqdm(pairs, desc="pairs", unit="pair")]
    methods = ExplainOptions().methods
    summary = summarize(rows, methods)
    out = Path(args.out)
    write_json(
        out / "report.json", {"options": vars(args), "pipeline": pipeline.describe(), "summary": summary, "pairs": rows}
    )
    plot(rows, methods, out / "sanity.png")
    print("| method | rank corr. trained vs randomised (mean, max abs) | top-k drop | random-k drop | top > random |")
    print("|---|---|---|---|---|")
    for method, s in summary.items():
        print(
            f"| {method} | {s['rank_correlation_mean']:.3f}, {s['rank_correlation_abs_max']:.3f} | "
            f"{s['top_drop_mean']:.3f} | {s['random_drop_mean']:.3f} | {s['pairs_top_beats_random']} |"
        )


if __name__ == "__main__":
    main()
