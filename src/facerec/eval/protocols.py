"""Evaluation protocols, by name (`PROTOCOLS`): each runs a recognition pipeline on its data and
returns a report whose `summary` is a flat dict of numbers.

The same protocols run from the CLI (`facerec eval <name>`) and periodically during training
(`train.eval: [{name: lfw, options: {root: ..., folds: [9]}}]`). A new protocol is a class with
an `evaluate` method registered here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from facerec.core.files import write_json
from facerec.core.images import identity_tree
from facerec.data.lfw import LFWLayout
from facerec.errors import DataError
from facerec.eval.cross_age import FGNetProtocol, cacd_vs_pairs
from facerec.eval.identification import gallery_probe_split, identification_report
from facerec.eval.metrics import roc_curve
from facerec.eval.pairs import PairSet, read_bin, read_lfw_pairs, read_pairs_csv, sample_pairs
from facerec.eval.pose_breakdown import breakdown_summary, plot_breakdown, pose_report, resolve_pose_file
from facerec.eval.report import plot_roc, plot_score_histogram, read_published_roc, verification_metrics
from facerec.eval.templates import template_protocol
from facerec.pipeline import RecognitionPipeline
from facerec.registry import Registry


class EvaluationProtocol(Protocol):
    name: str

    def evaluate(
        self, pipeline: RecognitionPipeline, out_dir: str | Path | None = None, progress: bool = False
    ) -> dict[str, Any]:
        """The report (JSON-ready, with a flat numeric `summary`); plots and embeddings go to
        `out_dir` when given."""
        ...


PROTOCOLS: Registry[EvaluationProtocol] = Registry("evaluation protocol")


def build_protocol(name: str, options: dict[str, Any] | None = None) -> EvaluationProtocol:
    return PROTOCOLS.build(name, **(options or {}))


# ---- verification on pairs ------------------------------------------------------------------
@dataclass
class PairProtocol:
    """1:1 verification of a PairSet: 10-fold accuracy, ROC, AUC, EER, TAR@FAR, with and without
    flip; JSON, ROC and score-histogram PNGs and the embeddings .npz when `out_dir` is given."""

    pairs: PairSet
    name: str = "pairs"
    published: list[Path] = field(default_factory=list)  # published ROC files drawn beside ours
    pose_file: str | Path | None = None  # pose.tsv for the yaw-difference breakdown (default: beside the images)

    def evaluate(
        self, pipeline: RecognitionPipeline, out_dir: str | Path | None = None, progress: bool = False
    ) -> dict[str, Any]:
        start = time.perf_counter()
        embedded = pipeline.embed(self.pairs.images, progress=progress, desc=f"embedding ({self.name})")
        seconds = time.perf_counter() - start
        report: dict[str, Any] = {
            "protocol": self.name,
            "model": pipeline.model.name,
            "model_digest": pipeline.model.digest,
            "pipeline": pipeline.name,
            "pipeline_options": pipeline.describe(),
            "images": len(self.pairs.images),
            "faces_detected": int(embedded.detected.sum()) if pipeline.aligner is not None else None,
            "seconds": seconds,
            "images_per_second": len(self.pairs.images) / seconds,
        }
        for flip in (False, True):
            report["flip" if flip else "no_flip"] = verification_metrics(
                self.pairs.scores(embedded.get(flip)), self.pairs.same, self.pairs.fold
            )
        report["summary_by_flip"] = {key: pair_summary(report[key]) for key in ("no_flip", "flip")}
        self._add_pose(report, embedded)
        report["summary"] = report["summary_by_flip"]["flip" if pipeline.flip else "no_flip"]
        if out_dir is not None:
            self._write(Path(out_dir), report, embedded, pipeline.name)
        return report

    def _add_pose(self, report: dict[str, Any], embedded: Any) -> None:
        """The yaw-difference breakdown (eval/pose_breakdown.py) when the images have poses."""
        pose_file = resolve_pose_file(self.pairs, self.pose_file)
        if pose_file is None:
            return
        scores = {key: self.pairs.scores(embedded.get(key == "flip")) for key in ("no_flip", "flip")}
        report["pose"] = pose_report(self.pairs, pose_file, scores, report)
        for key in ("no_flip", "flip"):
            report["summary_by_flip"][key].update(breakdown_summary(report["pose"][key]))

    def _write(self, out: Path, report: dict[str, Any], embedded: Any, name: str) -> None:
        curves = {}
        out.mkdir(parents=True, exist_ok=True)
        for key in ("no_flip", "flip"):
            scores = self.pairs.scores(embedded.get(key == "flip"))
            curves[f"{name} ({key.replace('_', ' ')})"] = roc_curve(scores, self.pairs.same)
            threshold = float(np.mean(report[key]["fold_thresholds"]))
            plot_score_histogram(scores, self.pairs.same, out / f"histogram_{key}.png", threshold, f"{name}, {key}")
        published = {p.stem: read_published_roc(p) for p in self.published}
        plot_roc(curves, out / "roc.png", published, title=f"{name}: {len(self.pairs)} pairs")
        if "pose" in report:
            breakdowns = {key.replace("_", " "): report["pose"][key] for key in ("no_flip", "flip")}
            plot_breakdown(breakdowns, out / "yaw_difference.png", f"{name}: by |yaw difference| within a pair")
        embedded.save(out / "embeddings.npz", self.pairs.names)
        write_json(out / "report.json", report)


def pair_summary(metrics: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of verification_metrics, flat (TAR@FAR only where measurable)."""
    summary = {
        "accuracy": metrics["kfold_accuracy"],
        "accuracy_std": metrics["kfold_std"],
        "threshold": float(np.mean(metrics["fold_thresholds"])),
        "auc": metrics["auc"],
        "eer": metrics["eer"],
    }
    for far, tar in metrics["tar_at_far"].items():
        if isinstance(tar, float):
            summary[f"tar_at_far_{far}"] = tar
    return summary


@PROTOCOLS.register("lfw")
def lfw(
    root: str | Path,
    pairs: str | Path | None = None,
    folds: list[int] | None = None,
    published: list | None = None,
    pose: str | Path | None = None,
) -> PairProtocol:
    """LFW View 2 (ten folds of `meta/pairs.txt`; `folds` keeps some) or View 1 with `pairs`;
    `pose`: a pose.tsv of the same images (e.g. of an aligned copy) for the yaw breakdown."""
    layout = LFWLayout.at(root)
    pair_set = read_lfw_pairs(Path(pairs) if pairs else layout.pairs_file, layout.images)
    if folds:
        pair_set = pair_set.select(np.isin(pair_set.fold, folds))
        if not len(pair_set):
            raise DataError(f"LFW folds {folds} hold no pairs (folds are 0-9)")
    return PairProtocol(pair_set, "lfw", [Path(p) for p in published or []], pose)


@PROTOCOLS.register("pairs")
def pairs_csv(csv: str | Path, base: str | Path | None = None, pose: str | Path | None = None) -> PairProtocol:
    """A CSV of `path1,path2,label[,fold]` lines; `pose` as for lfw."""
    return PairProtocol(read_pairs_csv(csv, base), Path(csv).stem, pose_file=pose)


@PROTOCOLS.register("bin")
def bin_file(file: str | Path) -> PairProtocol:
    """An insightface-style `.bin` of aligned pairs (lfw.bin, cfp_fp.bin, agedb_30.bin ...)."""
    return PairProtocol(read_bin(file), Path(file).stem)


@PROTOCOLS.register("cacd_vs")
def cacd_vs(root: str | Path, folds: list[int] | None = None, pose: str | Path | None = None) -> PairProtocol:
    """CACD-VS cross-age verification (eval/cross_age.py): 4,000 pairs in ten identity-disjoint
    folds; `folds` keeps some; raw images (detector mtcnn) or an aligned copy (detector none)."""
    pair_set = cacd_vs_pairs(root)
    if folds:
        pair_set = pair_set.select(np.isin(pair_set.fold, folds))
        if not len(pair_set):
            raise DataError(f"CACD-VS folds {folds} hold no pairs (folds are 0-9)")
    return PairProtocol(pair_set, "cacd_vs", pose_file=pose)


# ---- verification on a labelled set (held-out identities) -----------------------------------
@dataclass
class HeldOutPairs:
    """Random genuine and impostor pairs of a labelled FaceDataset of aligned crops (the
    identities a training run holds out): 10-fold accuracy at the threshold of the other folds."""

    dataset: Any  # FaceDataset: __getitem__ -> (crop tensor, label, ...), `labels`
    num_pairs: int = 6000
    seed: int = 0
    name: str = "held_out"

    def evaluate(
        self, pipeline: RecognitionPipeline, out_dir: str | Path | None = None, progress: bool = False
    ) -> dict[str, Any]:
        emb = pipeline.embed_dataset(self.dataset)
        pairs = sample_pairs(self.dataset.labels, self.num_pairs, self.seed)
        metrics = verification_metrics(pairs.scores(emb), pairs.same, pairs.fold)
        report = {"protocol": self.name, "flip": metrics, "summary": pair_summary(metrics)}
        if out_dir is not None:
            write_json(Path(out_dir) / "report.json", report)
        return report


# ---- identification -------------------------------------------------------------------------
@PROTOCOLS.register("identify")
@dataclass
class Identification:
    """Closed- and open-set 1:N identification on an identity-folder tree: some images per
    identity enrolled, the rest probe; a fraction of identities never enrolled (non-mated)."""

    root: str | Path
    seed: int = 0
    gallery_images: int = 1
    unenrolled: float = 0.3
    name: str = "identify"

    def evaluate(
        self, pipeline: RecognitionPipeline, out_dir: str | Path | None = None, progress: bool = False
    ) -> dict[str, Any]:
        tree = identity_tree(self.root)
        paths = [path for identity in tree for path in identity.images]
        labels = np.array([k for k, identity in enumerate(tree) for _ in identity.images])
        emb = pipeline.embed(paths, progress=progress, desc="embedding (identify)").get(pipeline.flip)
        try:
            split = gallery_probe_split(labels, self.seed, self.gallery_images, self.unenrolled)
        except ValueError as exc:
            raise DataError(f"{self.root}: {exc}") from None
        report = {"protocol": self.name, "model": pipeline.model.name, "seed": self.seed}
        report.update(identification_report(emb, labels, split))
        report["summary"] = {k: float(report[k]) for k in ("rank1", "rank5") if k in report}
        if out_dir is not None:
            write_json(Path(out_dir) / "identification.json", report)
        return report


PROTOCOLS.register("fgnet")(FGNetProtocol)  # leave-one-out identification across ages: eval/cross_age.py


# ---- templates (IJB-B/IJB-C layout) -------------------------------------------------------------
PROTOCOLS.register("templates")(template_protocol)  # 1:1 and 1:N over templates: eval/templates.py
