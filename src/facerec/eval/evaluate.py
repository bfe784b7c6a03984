"""End-to-end verification evaluation of a pair protocol: embed, score, report, plot."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facerec.eval.metrics import roc_curve
from facerec.eval.protocols import PairSet
from facerec.eval.report import plot_roc, plot_score_histogram, read_published_roc, verification_metrics, write_json
from facerec.eval.runner import EmbeddedImages, embed_images
from facerec.models.io import Embedder


def score_pairs(emb: np.ndarray, pairs: PairSet) -> np.ndarray:
    return (emb[pairs.left] * emb[pairs.right]).sum(1)


def evaluate_pairs(
    pairs: PairSet,
    embedder: Embedder,
    aligner: Any | None,
    out_dir: str | Path,
    name: str = "model",
    published: list[str | Path] | None = None,
    progress: bool = True,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Report with and without flip augmentation; JSON + ROC and histogram PNGs in out_dir.
    `transform` changes every aligned crop before it is embedded (e.g. a resolution loss)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    embedded: EmbeddedImages = embed_images(pairs.images, embedder, aligner, progress=progress, transform=transform)
    seconds = time.perf_counter() - start
    report: dict[str, Any] = {
        "model": embedder.name,
        "pipeline": name,
        "images": len(pairs.images),
        "faces_detected": int(embedded.detected.sum()) if aligner is not None else None,
        "seconds": seconds,
        "images_per_second": len(pairs.images) / seconds,
    }
    curves = {}
    for flip in (False, True):
        scores = score_pairs(embedded.get(flip), pairs)
        key = "flip" if flip else "no_flip"
        report[key] = verification_metrics(scores, pairs.same, pairs.fold)
        curves[f"{name} ({'flip' if flip else 'no flip'})"] = roc_curve(scores, pairs.same)
        plot_score_histogram(
            scores,
            pairs.same,
            out / f"histogram_{key}.png",
            threshold=float(np.mean(report[key]["fold_thresholds"])),
            title=f"{name}, {key}",
        )
    pub = {Path(p).stem: read_published_roc(p) for p in (published or [])}
    plot_roc(curves, out / "roc.png", pub, title=f"{name}: {len(pairs)} pairs")
    embedded.save(out / "embeddings.npz", pairs.names)
    write_json(out / "report.json", report)
    return report
