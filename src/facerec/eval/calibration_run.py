"""`facerec calibrate` end to end: embed the operator's labelled data through a recognition
pipeline, calibrate the threshold for a target FAR (`eval.calibration`), write report.json and
calibration.png, and the threshold into a new model file.

Data: an identity-folder tree (root/<person>/<image>: every pair of its images, mated when both
are of one person) or a pairs file: a CSV of path1,path2,label[,fold] or an LFW pairs.txt. The
subject of an image of a pairs file is its folder's name (LFW and identity trees name folders
after people); when those names contradict the pairs' labels the bootstrap resamples pairs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerec.core.files import write_json
from facerec.core.images import identity_tree
from facerec.errors import DataError, FacerecError
from facerec.eval.calibration import Calibration, Resamples, Trials, calibrate, fmr_grid, pair_trials, tree_trials
from facerec.eval.pairs import PairSet, read_lfw_pairs, read_pairs_csv
from facerec.models.card import ThresholdRecord
from facerec.models.io import RecognitionModel, write_model_file
from facerec.models.named import DEFAULT_MODEL_FILE
from facerec.models.onnx_file import OnnxNet
from facerec.models.registry import BACKBONES
from facerec.pipeline import RecognitionPipeline


@dataclass
class CalibrationData:
    """What to calibrate on: a tree (a folder) or, with `pairs`, a pairs file."""

    path: Path
    pairs: bool = False
    base: Path | None = None  # where a pairs file's images are (CSV: its folder; LFW: ROOT/images)
    folds: list[int] | None = None  # only these folds of a pairs file


# ---- the data -> scored pairs ------------------------------------------------------------------
def _read_lfw(path: Path, base: Path | None) -> PairSet:
    return read_lfw_pairs(path, base or path.parent.parent / "images")  # ROOT/meta/pairs.txt


PAIR_READERS: dict[str, Callable[[Path, Path | None], PairSet]] = {".csv": read_pairs_csv}
DEFAULT_PAIR_READER = _read_lfw  # any other file: LFW's pairs.txt format


def read_pairs(data: CalibrationData) -> PairSet:
    if not data.path.is_file():
        raise DataError(f"pairs file not found: {data.path}")
    pairs = PAIR_READERS.get(data.path.suffix.lower(), DEFAULT_PAIR_READER)(data.path, data.base)
    if data.folds is not None:
        pairs = pairs.select(np.isin(pairs.fold, data.folds))
        if not len(pairs):
            raise DataError(f"no pairs in folds {data.folds} of {data.path}")
    return pairs


def pairs_trials(pipeline: RecognitionPipeline, data: CalibrationData, far: float, progress: bool) -> Trials:
    pairs = read_pairs(data)
    emb = pipeline.embed(pairs.images, progress=progress, desc="embedding pairs").get(pipeline.flip)
    folder = np.array([Path(str(name)).parent.name for name in pairs.names])
    return pair_trials(pairs.scores(emb), pairs.same, far, folder[pairs.left], folder[pairs.right])


def folder_trials(pipeline: RecognitionPipeline, data: CalibrationData, far: float, progress: bool) -> Trials:
    people = identity_tree(data.path)
    paths = [path for person in people for path in person.images]
    identities = np.array([person.name for person in people for _ in person.images])
    emb = pipeline.embed(paths, progress=progress, desc="embedding tree").get(pipeline.flip)
    return tree_trials(emb, identities, far, progress=progress)


def scored_trials(pipeline: RecognitionPipeline, data: CalibrationData, far: float, progress: bool) -> Trials:
    if data.pairs:
        return pairs_trials(pipeline, data, far, progress)
    if not data.path.is_dir():
        raise DataError(f"{data.path} is not an identity-folder tree (for a pairs file, add --pairs)")
    return folder_trials(pipeline, data, far, progress)


# ---- the run ---------------------------------------------------------------------------------
@dataclass
class CalibrationRun:
    calibration: Calibration
    record: ThresholdRecord | None  # None: no threshold (too few impostor pairs)
    report: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None


def describe_data(data: CalibrationData, cal: Calibration) -> str:
    """What a threshold record says about the data it was calibrated on."""
    folds = f" folds {data.folds}" if data.folds is not None else ""
    ci = f" [{cal.fmr_ci[0]:.2g}, {cal.fmr_ci[1]:.2g}]" if cal.fmr_ci else ""
    return (
        f"{data.path.name}{folds}: {cal.impostor_pairs:,} impostor pairs of {cal.subjects} people, "
        f"FMR {cal.fmr:.2g}{ci}"
    )


def run_calibration(
    pipeline: RecognitionPipeline,
    data: CalibrationData,
    far: float,
    out: Path,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = True,
) -> CalibrationRun:
    """Embed, calibrate, write out/report.json and out/calibration.png."""
    start = time.perf_counter()
    trials = scored_trials(pipeline, data, far, progress)
    cal, boot = calibrate(trials, far, n_boot, level, seed, progress=progress)
    record = None
    if cal.threshold is not None:
        record = ThresholdRecord(cal.threshold, pipeline.detector, pipeline.flip, describe_data(data, cal), far)
    report = {
        "model": pipeline.model.name,
        "model_digest": pipeline.model.digest,
        "pipeline": pipeline.describe(),
        "data": str(data.path),
        "data_kind": "pairs file" if data.pairs else "identity tree (every pair of its images)",
        "folds": data.folds,
        "calibration": cal.to_dict(),
        "threshold_record": None if record is None else record.__dict__,
        "seconds": time.perf_counter() - start,
        "command": "facerec " + " ".join(sys.argv[1:]) if sys.argv and "facerec" in sys.argv[0] else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    if cal.threshold is not None:
        plot_calibration(trials, cal, boot, out / "calibration.png", f"{pipeline.name} on {data.path.name}")
    return CalibrationRun(cal, record, report, out)


# ---- writing the threshold into a model file ---------------------------------------------------
def check_card_target(model: RecognitionModel, path: Path, overwrite: bool = False) -> None:
    """Refuse, before any work, a model file that cannot be written: a model that is not a
    facerec backbone (dlib, an ONNX file), the shipped default, an existing file."""
    if isinstance(model.net, OnnxNet) or model.card.architecture not in BACKBONES.names():
        raise FacerecError(
            f"model '{model.name}' is not a facerec network ({model.card.architecture}): its card cannot be "
            "written to a model file; write the threshold into a gallery (--gallery STORE:NAME) instead"
        )
    if path.resolve() == DEFAULT_MODEL_FILE.resolve():
        raise FacerecError("the shipped default model file is never overwritten: give another --write-card path")
    if path.exists() and not overwrite:
        raise FacerecError(f"{path} exists: choose another --write-card path, or add --overwrite")


def write_calibrated_model(model: RecognitionModel, record: ThresholdRecord, path: Path, overwrite: bool) -> Path:
    """A model file with the same weights (so the same digest: galleries stay valid) whose card
    holds `record` in place of any earlier record for the same pipeline and target."""
    check_card_target(model, path, overwrite)
    state = {k: v.detach().cpu() for k, v in model.net.state_dict().items()}
    return write_model_file(path, model.card.with_threshold(record), state)


# ---- the picture -------------------------------------------------------------------------------
def plot_calibration(trials: Trials, cal: Calibration, boot: Resamples | None, path: Path, title: str) -> Path:
    """Left: genuine and impostor score histograms with the threshold (and its interval).
    Right: the FMR against the threshold near the target, with its bootstrap band."""
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    scores = np.r_[trials.genuine, trials.sample]
    bins = np.linspace(scores.min(), scores.max(), 80)
    left.hist(trials.genuine, bins=bins, alpha=0.6, density=True, label=f"mated ({len(trials.genuine):,})")
    imp_label = f"impostor ({trials.impostor_count:,}; {len(trials.sample):,} drawn)"
    left.hist(trials.sample, bins=bins, alpha=0.6, density=True, label=imp_label)
    _threshold_marks(left, cal)
    left.set_xlabel("cosine similarity")
    left.set_ylabel("density")
    left.legend(fontsize=7)
    grid = fmr_grid(trials, cal.threshold)
    fmr = (trials.impostor[None, :] >= grid[:, None]).sum(1) / trials.impostor_count
    right.plot(grid, np.maximum(fmr, 1e-12), drawstyle="steps-post", label="FMR on the data")
    if boot is not None:
        lo, hi = np.quantile(boot.curve, [(1 - cal.level) / 2, 1 - (1 - cal.level) / 2], axis=0)
        right.fill_between(grid, np.maximum(lo, 1e-12), np.maximum(hi, 1e-12), alpha=0.3, label=f"{cal.level:.0%} CI")
    right.axhline(cal.far, color="r", linestyle="--", lw=0.8, label=f"target FAR {cal.far:g}")
    _threshold_marks(right, cal)
    right.set_yscale("log")
    right.set_ylim(max(0.5 / trials.impostor_count, 1e-12), None)
    right.set_xlabel("threshold (accept: score >= threshold)")
    right.set_ylabel("false-match rate")
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=110)


def _threshold_marks(ax: Any, cal: Calibration) -> None:
    ax.axvline(cal.threshold, color="k", linestyle=":", label=f"threshold {cal.threshold:.4f}")
    if cal.threshold_ci:
        ax.axvspan(*cal.threshold_ci, color="k", alpha=0.08, label=f"threshold {cal.level:.0%} CI")
