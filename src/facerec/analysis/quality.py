"""Face quality on LFW View 2: error-versus-discard curves (EDC) of quality scorers against random
discarding and the oracle, at thresholds fixed at target FMRs on all pairs. Used by
`facerec analyze quality`; the scorers and the curves are in `facerec.eval.quality`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from facerec.analysis.common import lfw_pairs_over
from facerec.analysis.studies import Source, short_name
from facerec.core.files import save_npz, write_json
from facerec.data.transforms import to_tensor
from facerec.errors import DataError
from facerec.eval.pairs import Pairs
from facerec.eval.quality import (
    build_scorer,
    discard_curve,
    face_quality,
    fmr_threshold,
    oracle_discard_curve,
    pair_quality,
    random_discard_curve,
)
from facerec.pipeline import RecognitionPipeline

BATCH = 64  # faces per scorer call (x the perturbations for stability)
REPORTED_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass
class QualityStudy:
    """What to compare: scorers (name -> options), the detector of the provisional baseline
    (None: no baseline), the target FMRs, how far to discard, how many random orders."""

    scorers: dict[str, dict[str, Any]]
    baseline_detector: str | None = "mtcnn"
    fmrs: tuple[float, ...] = (1e-2, 1e-3)
    max_discard: float = 0.5
    repeats: int = 100
    norm_range: tuple[float, float] | None = None  # feature_norm's [low, high]; None: the data's


def aligned_paths(paths: list[Path], tree: Path) -> list[Path]:
    """The crop of each LFW image in an aligned copy of the tree (`facerec align`: same
    <Name>/<file> under `tree`)."""
    crops = [tree / path.parent.name / path.name for path in paths]
    missing = [c for c in crops if not c.is_file()]
    if missing:
        raise DataError(f"{len(missing)} of {len(crops)} images have no aligned crop under {tree}, e.g. {missing[0]}")
    return crops


def quality_study(
    source: Source, model: str, detector: str, aligned: Path | None, study: QualityStudy, out: Path
) -> dict[str, Any]:
    if source.lfw is None:
        raise DataError("the quality study scores LFW View 2 pairs: give --lfw ROOT")
    images = source.image_set()
    pairs = lfw_pairs_over(images, source.lfw, source.folds)
    if aligned is not None:  # pre-aligned crops: nothing left to detect
        crops, detector = aligned_paths(images.paths, aligned), "none"
    else:
        crops = images.paths
    pipeline = RecognitionPipeline.load(
        model, detector=detector, several="central", missing="center", device=source.device
    )
    # one pass per direction gives the embeddings and the raw norms (feature_norm's input)
    both = cached(source.cache, pipeline, "embedding-flip+norm", crops, lambda todo: _embedded(pipeline, todo))
    scores = pairs.scores(both[:, :-1])
    qualities = image_qualities(pipeline, crops, images.paths, study, source.cache, both[:, -1])
    report: dict[str, Any] = {
        "model": model,
        "pipeline": pipeline.name,
        "pipeline_options": pipeline.describe(),
        "aligned_crops": str(aligned) if aligned else None,
        "folds": source.folds or list(range(10)),
        "images": len(images),
        "pairs": len(pairs),
        "genuine_pairs": int(pairs.same.sum()),
        "impostor_pairs": int((~pairs.same).sum()),
        "scorers": {name: describe_scores(q) for name, q in qualities.items()},
        "options": {name: options for name, options in study.scorers.items()},
        "settings": scorer_settings(study, both[:, -1]),
        "edc": {f"{fmr:g}": edc_at(scores, pairs, qualities, fmr, study) for fmr in study.fmrs},
        "definitions": DEFINITIONS,
    }
    out.mkdir(parents=True, exist_ok=True)
    plot_edc(report, scores, pairs, qualities, study, out / "edc.png", f"{short_name(model)} ({pipeline.name})")
    save_npz(out / "qualities.npz", names=np.array([str(p) for p in images.paths]), **qualities)
    report["command"] = "facerec " + " ".join(sys.argv[1:]) if sys.argv and "facerec" in sys.argv[0] else None
    write_json(out / "report.json", report)
    return report


DEFINITIONS = {
    "pair_quality": "the lower of the two faces' qualities",
    "threshold": "set once on all impostor pairs at the target FMR (lowest threshold with FMR <= target), then fixed",
    "discarded_fraction": "of the genuine pairs, lowest pair quality first (ties keep the pairs' file order)",
    "fnmr": "genuine pairs kept that score below the threshold / genuine pairs kept",
    "area": "area under the EDC from 0 to max_discard (trapezoids); lower is better",
    "random": "mean EDC of seeded random discard orders; its expectation is flat at the full set's FNMR",
    "oracle": "the false non-matches discarded first: the best any score could do",
}


# ---- per-image quality, cached ---------------------------------------------------------------
def image_qualities(
    pipeline: RecognitionPipeline,
    crops: list[Path],
    originals: list[Path],
    study: QualityStudy,
    cache: Path | None,
    norms: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each scorer's quality per image (the provisional detector score from the originals);
    `norms`: the raw embedding norm of each crop."""
    found: dict[str, np.ndarray] = {}
    for name, options in study.scorers.items():
        if name == "feature_norm":
            found[name] = _norm_scores(norms, study.norm_range, options)
        else:
            scorer = build_scorer(name, options)
            key = f"{name}-{_options_key(asdict(scorer))}"  # every option, defaults too
            found[name] = cached(cache, pipeline, key, crops, lambda todo, s=scorer: _scored(pipeline, todo, s))
    if study.baseline_detector is not None:
        detector = study.baseline_detector
        found["detector (provisional)"] = cached(
            cache,
            pipeline,
            f"detector-{detector}",
            originals,
            lambda todo: detector_qualities(pipeline, todo, detector),
        )
    return found


def scorer_settings(study: QualityStudy, norms: np.ndarray) -> dict[str, dict[str, Any]]:
    """Every option each scorer ran with, defaults included; feature_norm's range as used."""
    settings = {}
    for name, options in study.scorers.items():
        if name == "feature_norm":
            low, high = _norm_range(norms, study.norm_range, options)
            settings[name] = {
                "low": low,
                "high": high,
                "raw_norm_min": float(norms.min()),
                "raw_norm_max": float(norms.max()),
            }
        else:
            settings[name] = asdict(build_scorer(name, options))
    return settings


def _norm_range(
    norms: np.ndarray, norm_range: tuple[float, float] | None, options: dict[str, Any]
) -> tuple[float, float]:
    low, high = norm_range or (options.get("low", float(norms.min())), options.get("high", float(norms.max())))
    return float(low), float(high)


def _norm_scores(norms: np.ndarray, norm_range: tuple[float, float] | None, options: dict[str, Any]) -> np.ndarray:
    """feature_norm's [0, 1] score; its range by default the data's, so nothing is clipped and
    the EDC sees the norms' full order."""
    low, high = _norm_range(norms, norm_range, options)
    return np.clip((norms - low) / max(high - low, 1e-12), 0.0, 1.0)


def _embedded(pipeline: RecognitionPipeline, paths: list[Path]) -> np.ndarray:
    """Per crop: its L2-normalized flip-summed embedding (the pipeline's default) and, last, the
    norm of its raw (unflipped) embedding, from the same two forward passes."""
    parts = []
    for start in tqdm(range(0, len(paths), BATCH), desc="embedding", unit="batch"):
        batch = torch.stack([to_tensor(pipeline.align(p).crop) for p in paths[start : start + BATCH]])
        raw, mirrored = pipeline.features(batch), pipeline.features(batch.flip(3))
        embedding = torch.nn.functional.normalize(raw + mirrored, dim=1)
        parts.append(torch.cat([embedding, raw.norm(dim=1, keepdim=True)], dim=1).double().cpu().numpy())
    return np.concatenate(parts)


def _scored(pipeline: RecognitionPipeline, paths: list[Path], scorer: Callable[..., np.ndarray]) -> np.ndarray:
    parts = []
    for start in tqdm(range(0, len(paths), BATCH), desc=f"quality ({getattr(scorer, 'name', 'norm')})", unit="batch"):
        batch = torch.stack([to_tensor(pipeline.align(p).crop) for p in paths[start : start + BATCH]])
        parts.append(scorer(pipeline, batch))
    return np.concatenate(parts)


def detector_qualities(pipeline: RecognitionPipeline, originals: list[Path], detector: str) -> np.ndarray:
    """The provisional score (detector confidence x size x frontality) of the face the detector
    chooses in each original image; 0 where it finds none."""
    finder = RecognitionPipeline(pipeline.model, detector, several="central", missing="center", device=pipeline.device)
    size = pipeline.model.input_size
    qualities = []
    for path in tqdm(originals, desc=f"detecting ({detector})", unit="img"):
        face = finder.align(path).face
        qualities.append(0.0 if face is None else face_quality(face, size))
    return np.array(qualities)


def cached(
    cache: Path | None,
    pipeline: RecognitionPipeline,
    key: str,
    paths: list[Path],
    compute: Callable[[list[Path]], np.ndarray],
) -> np.ndarray:
    """`compute(paths)` per model, pipeline and scorer, kept per image in `cache`/quality: only
    the images not computed before are (an interrupted or smaller earlier run counts)."""
    if cache is None:
        return compute(paths)
    slug = "".join(c if c.isalnum() else "-" for c in f"{pipeline.model.name}_{pipeline.detector}_{key}")[:100]
    target = Path(cache) / "quality" / f"{slug}_{pipeline.model.digest[:16]}.npz"
    known: dict[str, np.ndarray] = {}
    if target.is_file():
        with np.load(target) as stored:  # by resolved path: ../x and /abs/x are one image
            known = {str(Path(n).resolve()): v for n, v in zip(stored["names"].tolist(), stored["values"], strict=True)}
    names = [str(Path(p).resolve()) for p in paths]
    todo = [p for p, name in zip(paths, names, strict=True) if name not in known]
    if todo:
        known.update(zip([str(Path(p).resolve()) for p in todo], compute(todo), strict=True))
        save_npz(target, names=np.array(list(known)), values=np.stack(list(known.values())))
    return np.stack([known[name] for name in names])


def _options_key(options: dict[str, Any]) -> str:
    return "-".join(f"{k}{v}" for k, v in sorted(options.items())) or "defaults"


# ---- curves and numbers ----------------------------------------------------------------------
def describe_scores(quality: np.ndarray) -> dict[str, Any]:
    """Where a scorer's values lie (for choosing a min_quality)."""
    percentiles = (1, 5, 10, 25, 50, 75, 90)
    return {
        "mean": float(quality.mean()),
        "percentiles": {str(p): float(np.percentile(quality, p)) for p in percentiles},
    }


def edc_at(
    scores: np.ndarray, pairs: Pairs, qualities: dict[str, np.ndarray], fmr: float, study: QualityStudy
) -> dict[str, Any]:
    threshold = fmr_threshold(scores[~pairs.same], fmr)
    genuine = scores[pairs.same]
    rand = random_discard_curve(genuine, threshold, study.max_discard, study.repeats)
    random_areas = rand.areas()
    oracle = oracle_discard_curve(genuine, threshold, study.max_discard)
    result: dict[str, Any] = {
        "threshold": threshold,
        "fmr_measured": float((scores[~pairs.same] >= threshold).mean()),
        "fnmr_all_pairs": float((genuine < threshold).mean()),
        "random": {
            "area": float(random_areas.mean()),
            "area_p5_p95": [float(np.percentile(random_areas, 5)), float(np.percentile(random_areas, 95))],
            "area_to_0.2": float(rand.areas(0.2).mean()),
            "orders": study.repeats,
        },
        "oracle": {"area": oracle.area(), "area_to_0.2": oracle.area(0.2)},
        "scorers": {},
    }
    for name, quality in qualities.items():
        curve = discard_curve(
            genuine, pair_quality(quality, pairs.left, pairs.right)[pairs.same], threshold, study.max_discard
        )
        area = curve.area()
        result["scorers"][name] = {
            "area": area,
            "area_to_0.2": curve.area(0.2),
            "area_over_random": area / result["random"]["area"] if result["random"]["area"] else None,
            "random_orders_at_or_below": float((random_areas <= area).mean()),  # a permutation p-value
            "beats_random": bool(area < result["random"]["area_p5_p95"][0]),
            "fnmr_at": {f"{f:g}": float(np.interp(f, curve.fractions, curve.fnmr)) for f in REPORTED_FRACTIONS},
        }
    return result


def plot_edc(
    report: dict[str, Any],
    scores: np.ndarray,
    pairs: Pairs,
    qualities: dict[str, np.ndarray],
    study: QualityStudy,
    path: Path,
    title: str,
) -> None:
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(study.fmrs), figsize=(6 * len(study.fmrs), 4.4), squeeze=False)
    genuine = scores[pairs.same]
    for ax, fmr in zip(axes[0], study.fmrs, strict=True):
        edc = report["edc"][f"{fmr:g}"]
        threshold = edc["threshold"]
        rand = random_discard_curve(genuine, threshold, study.max_discard, study.repeats)
        low, high = rand.band()
        ax.fill_between(rand.fractions, low, high, color="0.85", label="random, 5-95%")
        ax.plot(rand.fractions, rand.mean.fnmr, color="0.4", lw=1.2, label=f"random (area {edc['random']['area']:.4f})")
        for name, quality in qualities.items():
            q = pair_quality(quality, pairs.left, pairs.right)[pairs.same]
            curve = discard_curve(genuine, q, threshold, study.max_discard)
            ax.plot(curve.fractions, curve.fnmr, lw=1.6, label=f"{name} (area {edc['scorers'][name]['area']:.4f})")
        oracle = oracle_discard_curve(genuine, threshold, study.max_discard)
        ax.plot(oracle.fractions, oracle.fnmr, "k--", lw=1, label=f"oracle (area {edc['oracle']['area']:.4f})")
        ax.set_xlabel("fraction of genuine pairs discarded (lowest quality first)")
        ax.set_ylabel("FNMR")
        ax.set_title(f"FMR {fmr:g} (threshold {threshold:.3f} fixed)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Error versus discard, LFW View 2 ({report['pairs']} pairs): {title}")
    save_figure(fig, path, dpi=100)
