"""Template protocols (IJB-B / IJB-C style): a subject is compared as a *template*, a set of face
images grouped by the media (photo, video) they come from, not as single images.

Readers:
- the IJB layout as insightface's IJB evaluation reads it (`read_ijb`): `meta/<p>_face_tid_mid.txt`
  (`image_name template_id media_id` a line), `meta/<p>_template_pair_label.txt` (`t1 t2 label`),
  the 1:N files `<p>_1N_gallery_G1.csv`, `..._G2.csv` (IJB-B: `_S1`, `_S2`) and
  `<p>_1N_probe_mixed.csv` (header `TEMPLATE_ID,SUBJECT_ID,FILENAME,...`), images under
  `loose_crop/` or `images/`; `p` is `ijbc` or `ijbb`;
- a generic templates CSV (`read_templates_csv`): `template_id,subject_id,path[,media_id]`, with a
  template-pairs CSV `t1,t2,label` and gallery / probe CSVs in the 1:N format above.

Template features (`POOLINGS`), from L2-normalized image embeddings f_i, then L2-normalized:
- `mean`: the mean of f_i over the template's images;
- `media`: the mean of f_i within each media, then the mean over the media (insightface's IJB
  evaluation), so a video's hundred frames count as much as one photo;
- `quality`: sum_i w_i f_i with w_i = q_i / sum_j q_j, q_i >= 0 a per-image quality. By default
  q_i is the image's feature norm before normalization, ||x_i|| (with flip, x_i is the sum of the
  image's and its mirror's features): then sum_i q_i f_i = sum_i x_i, the norm-aware mean of
  MagFace / AdaFace (and insightface's `use_norm_score`). A quality of 0 drops an image.

Metrics: 1:1 verification of the template pairs (TAR at FAR 1e-1 ... 1e-6, 'not measurable' where
there are too few impostor pairs, ROC AUC, EER) and 1:N identification of the probe templates
against each gallery: CMC at rank 1, 5, 10 over the mated probes (subject enrolled) and TPIR at
FPIR 1e-1, 1e-2 with the non-mated probes (subject not in that gallery).

`write_template_set` builds such a set from an identity-folder tree (e.g. LFW): the tests' data
and the docs' worked example, since we hold no IJB data.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerec.core.files import write_json, write_text
from facerec.core.images import identity_tree
from facerec.errors import DataError
from facerec.eval.identification import cmc, fnir_at_fpir, identity_scores, mated_ranks
from facerec.eval.metrics import roc_curve
from facerec.eval.report import plot_roc, verification_metrics
from facerec.pipeline import RecognitionPipeline
from facerec.registry import Registry

RANKS = (1, 5, 10)
FPIRS = (1e-1, 1e-2)
IMAGE_FOLDERS = ("loose_crop", "images")  # where the IJB layout keeps its images


# ---- the data ---------------------------------------------------------------------------------
@dataclass
class TemplatePairs:
    """1:1 comparisons of templates, by template id."""

    t1: np.ndarray
    t2: np.ndarray
    same: np.ndarray  # bool: both templates show the same subject


@dataclass
class TemplateList:
    """Templates with their subject ids: a 1:N gallery or the probe set."""

    templates: np.ndarray
    subjects: np.ndarray


@dataclass
class TemplateSet:
    """Templates as rows of (image, template, media): an image may sit in several templates."""

    images: list[Path]  # unique image files
    names: list[str]  # each image's name as the metadata writes it (matches quality files)
    image: np.ndarray  # (E,) row -> index into `images`
    template: np.ndarray  # (E,) template id of each row
    media: np.ndarray  # (E,) media id of each row
    pairs: TemplatePairs | None = None
    galleries: dict[str, TemplateList] = field(default_factory=dict)
    probes: TemplateList | None = None
    name: str = "templates"

    def template_ids(self) -> np.ndarray:
        return np.unique(self.template)

    def check(self, source: str) -> TemplateSet:
        """Every template that a pair, gallery or probe names has images; something to evaluate."""
        known = self.template_ids()
        lists: list[tuple[str, np.ndarray]] = [(f"{name} gallery", g.templates) for name, g in self.galleries.items()]
        if self.pairs is not None:
            lists += [("template pair list", np.concatenate([self.pairs.t1, self.pairs.t2]))]
        if self.probes is not None:
            lists.append(("probe list", self.probes.templates))
        for what, ids in lists:
            empty = np.setdiff1d(ids, known)
            if len(empty):
                more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
                raise DataError(f"{source}: the {what} names template {empty[0]}{more}, which has no images")
        if self.pairs is None and not self.galleries:
            raise DataError(f"{source}: no template pair list and no 1:N gallery: nothing to evaluate")
        if self.galleries and self.probes is None:
            raise DataError(f"{source}: 1:N galleries without a probe list")
        return self


# ---- readers ----------------------------------------------------------------------------------
def read_ijb(root: str | Path, prefix: str = "ijbc", images: str | Path | None = None) -> TemplateSet:
    """An IJB-B / IJB-C release as insightface's evaluation reads it (see the module docstring):
    files in `root/meta/` (or `root/`); the pair list and the 1:N files are each optional.
    `images`: the image folder (default `loose_crop/` or `images/` under `root`)."""
    root = Path(root)
    meta = root / "meta" if (root / "meta").is_dir() else root
    tid_mid = _required(meta / f"{prefix}_face_tid_mid.txt", "IJB template-media file")
    rows = _split_lines(tid_mid, 3)
    folder = _image_folder(root, images)
    pair_file = meta / f"{prefix}_template_pair_label.txt"
    probe_file = meta / f"{prefix}_1N_probe_mixed.csv"
    ts = TemplateSet(
        *_membership([r[0] for _, r in rows], folder),
        template=_ints(rows, 1, tid_mid),
        media=_ints(rows, 2, tid_mid),
        pairs=_read_pairs(_split_lines(pair_file, 3), pair_file) if pair_file.is_file() else None,
        galleries={
            p.stem.rsplit("_", 1)[-1]: read_template_list(p) for p in sorted(meta.glob(f"{prefix}_1N_gallery_*.csv"))
        },
        probes=read_template_list(probe_file) if probe_file.is_file() else None,
        name=f"{prefix}:{root.name}",
    )
    return ts.check(str(root))


def read_templates_csv(
    csv_file: str | Path,
    pairs: str | Path | None = None,
    galleries: Sequence[str | Path] = (),
    probes: str | Path | None = None,
    base: str | Path | None = None,
) -> TemplateSet:
    """A generic templates CSV, `template_id,subject_id,path[,media_id]` (a header line allowed;
    without media ids each image is its own media), with a pairs CSV `t1,t2,label` and 1:N gallery
    and probe CSVs `TEMPLATE_ID,SUBJECT_ID,...`. Without `pairs`, every two templates form a pair
    (genuine when their subjects agree). Relative paths start at `base` (default: the CSV's folder)."""
    csv_file = _required(Path(csv_file), "templates CSV")
    rows = _csv_rows(csv_file)
    for number, row in rows:
        if len(row) not in (3, 4) or not row[2].strip():
            raise DataError(f"{csv_file}:{number}: expected template_id,subject_id,path[,media_id], got {row}")
    template = _ints(rows, 0, csv_file)
    subjects = _subject_of_templates(template, _ints(rows, 1, csv_file), csv_file)
    with_media = all(len(row) == 4 for _, row in rows)
    ts = TemplateSet(
        *_membership([row[2].strip() for _, row in rows], Path(base) if base else csv_file.parent),
        template=template,
        media=_ints(rows, 3, csv_file) if with_media else -np.arange(1, len(rows) + 1),  # one media per row
        pairs=_read_pairs(_csv_rows(_required(Path(pairs), "template pairs CSV")), Path(pairs))
        if pairs
        else all_template_pairs(subjects),
        galleries={Path(g).stem: read_template_list(g) for g in galleries},
        probes=read_template_list(probes) if probes else None,
        name=csv_file.stem,
    )
    return ts.check(str(csv_file))


def read_template_list(path: str | Path) -> TemplateList:
    """A 1:N CSV: header `TEMPLATE_ID,SUBJECT_ID,...`, one row per image (template ids repeat)."""
    path = _required(Path(path), "1:N template list")
    rows = _csv_rows(path)
    mapping = _subject_of_templates(_ints(rows, 0, path), _ints(rows, 1, path), path)
    ids = np.array(sorted(mapping), dtype=np.int64)
    return TemplateList(ids, np.array([mapping[t] for t in ids], dtype=np.int64))


def read_quality(path: str | Path, names: Sequence[str]) -> np.ndarray:
    """Per-image quality from lines `image_name ... score` (the score last: e.g. insightface's
    `<p>_name_5pts_score.txt` detector scores), in the order of `names`."""
    path = _required(Path(path), "quality file")
    scores = {}
    for number, parts in _split_lines(path, 2, exact=False):
        try:
            scores[parts[0]] = float(parts[-1])
        except ValueError:
            raise DataError(f"{path}:{number}: the last field is not a number: {parts[-1]}") from None
    missing = [n for n in names if n not in scores]
    if missing:
        raise DataError(f"{path} has no quality for {len(missing)} images, e.g. {missing[0]}")
    return np.array([scores[n] for n in names])


def all_template_pairs(template_subjects: dict[int, int]) -> TemplatePairs:
    ids = np.array(sorted(template_subjects))
    i, j = np.triu_indices(len(ids), k=1)
    subjects = np.array([template_subjects[t] for t in ids])
    return TemplatePairs(ids[i], ids[j], subjects[i] == subjects[j])


def _membership(names: list[str], folder: Path) -> tuple[list[Path], list[str], np.ndarray]:
    """(unique image files, their names as written, each row's index into them); every file must exist."""
    unique: dict[str, int] = {}
    index = np.array([unique.setdefault(n, len(unique)) for n in names], dtype=np.int64)
    files = [folder / n for n in unique]
    missing = next((f for f in files if not f.is_file()), None)
    if missing is not None:
        raise DataError(f"image of a template not found: {missing}")
    return files, list(unique), index


def _read_pairs(rows: list[tuple[int, list[str]]], path: Path) -> TemplatePairs:
    for number, row in rows:
        if len(row) != 3 or row[2].strip() not in ("0", "1"):
            raise DataError(f"{path}:{number}: expected t1 t2 label (label 0 or 1), got {row}")
    same = np.array([row[2].strip() == "1" for _, row in rows])
    return TemplatePairs(_ints(rows, 0, path), _ints(rows, 1, path), same)


def _required(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def _image_folder(root: Path, images: str | Path | None) -> Path:
    if images is not None:
        folder = Path(images) if Path(images).is_absolute() else root / images
        if not folder.is_dir():
            raise DataError(f"image folder not found: {folder}")
        return folder
    for name in IMAGE_FOLDERS:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root} holds no image folder ({' or '.join(IMAGE_FOLDERS)}); name one with `images`")


def _split_lines(path: Path, fields: int, exact: bool = True) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-separated fields) of each non-empty line."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < fields or (exact and len(parts) != fields):
            raise DataError(f"{path}:{number}: expected {fields} fields, got {len(parts)}: {line.strip()}")
        rows.append((number, parts))
    if not rows:
        raise DataError(f"{path} is empty")
    return rows


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each data row: blank and '#' lines and a header line left out."""
    with path.open(newline="") as fh:
        rows = [(n, row) for n, row in enumerate(csv.reader(fh), 1) if row and not row[0].startswith("#")]
    if rows and not rows[0][1][0].strip().lstrip("-").isdigit():  # a header names its columns
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path} holds no rows")
    return rows


def _ints(rows: list[tuple[int, list[str]]], column: int, path: Path) -> np.ndarray:
    """Column `column` of numbered rows as integer ids, naming the line that is not one."""
    out = np.empty(len(rows), dtype=np.int64)
    for k, (number, row) in enumerate(rows):
        try:
            out[k] = int(row[column])
        except (ValueError, IndexError):
            value = row[column] if column < len(row) else "nothing"
            raise DataError(f"{path}:{number}: expected an integer id in column {column + 1}, got {value}") from None
    return out


def _subject_of_templates(template: np.ndarray, subject: np.ndarray, path: Path) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for t, s in zip(template.tolist(), subject.tolist(), strict=True):
        if mapping.setdefault(t, s) != s:
            raise DataError(f"{path}: template {t} has images of subjects {mapping[t]} and {s}")
    return mapping


# ---- pooling ----------------------------------------------------------------------------------
# Each pooling maps one template's rows -- unit image features (n, D), media ids (n,) and
# qualities (n,) or None -- to one vector; pool_templates normalizes it.
Pooling = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]
POOLINGS: Registry[Pooling] = Registry("template pooling")


@POOLINGS.register("mean")
def mean_pooling(features: np.ndarray, media: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
    return features.mean(0)


@POOLINGS.register("media")
def media_pooling(features: np.ndarray, media: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
    return np.mean([features[media == m].mean(0) for m in np.unique(media)], axis=0)


@POOLINGS.register("quality")
def quality_pooling(features: np.ndarray, media: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
    if quality is None:
        raise DataError("quality pooling needs a quality per image (feature norms or a quality file)")
    total = quality.sum()
    if not total > 0:
        raise DataError("quality pooling: a template's images all have quality 0")
    return (quality[:, None] * features).sum(0) / total


@dataclass
class TemplateFeatures:
    ids: np.ndarray  # sorted template ids
    features: np.ndarray  # (T, D) L2-normalized, row k is template ids[k]

    def of(self, templates: np.ndarray) -> np.ndarray:
        return self.features[np.searchsorted(self.ids, templates)]


def pool_templates(
    ts: TemplateSet, embeddings: np.ndarray, pooling: str = "media", quality: np.ndarray | None = None
) -> TemplateFeatures:
    """One L2-normalized feature per template from the images' L2-normalized `embeddings` (a row
    per entry of `ts.images`) and, for quality pooling, a quality per image."""
    fn = POOLINGS.get(pooling)
    if quality is not None and (len(quality) != len(ts.images) or not (np.asarray(quality) >= 0).all()):
        raise DataError(
            f"quality must be one number >= 0 per image ({len(ts.images)}), got {len(quality)} values, "
            f"smallest {np.min(quality) if len(quality) else None}"
        )
    order = np.argsort(ts.template, kind="stable")
    ids, starts = np.unique(ts.template[order], return_index=True)
    pooled = np.empty((len(ids), embeddings.shape[1]))
    for k, rows in enumerate(np.split(order, starts[1:])):
        images = ts.image[rows]
        q = None if quality is None else np.asarray(quality, dtype=np.float64)[images]
        pooled[k] = fn(embeddings[images].astype(np.float64), ts.media[rows], q)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    if not (norms > 0).all():  # e.g. two opposite features: no direction to compare
        raise DataError(f"template {ids[np.flatnonzero(~(norms[:, 0] > 0))[0]]} pools to the zero vector")
    return TemplateFeatures(ids, pooled / norms)


# ---- metrics ----------------------------------------------------------------------------------
def pair_scores(pairs: TemplatePairs, pooled: TemplateFeatures) -> np.ndarray:
    """Cosine score of each template pair."""
    return (pooled.of(pairs.t1) * pooled.of(pairs.t2)).sum(1)


def verify_templates(pairs: TemplatePairs, pooled: TemplateFeatures) -> dict[str, Any]:
    """1:1 metrics of the pair list: TAR@FAR, AUC, EER and (interleaved) 10-fold accuracy."""
    if pairs.same.all() or not pairs.same.any():
        raise DataError("the template pair list needs both genuine and impostor pairs")
    folds = np.arange(len(pairs.same)) % 10  # IJB lists are sorted by label: interleave the folds
    return verification_metrics(pair_scores(pairs, pooled), pairs.same, folds)


def identify_templates(
    pooled: TemplateFeatures, gallery: TemplateList, probes: TemplateList, fpirs: tuple[float, ...] = FPIRS
) -> dict[str, Any]:
    """1:N search of every probe template in `gallery` (a subject's score: its best template):
    CMC over the mated probes, TPIR at FPIR with the non-mated probes as impostor searches."""
    scores, subjects = identity_scores(pooled.of(probes.templates), pooled.of(gallery.templates), gallery.subjects)
    mated = np.isin(probes.subjects, subjects)
    if not mated.any():
        raise DataError("no probe template's subject is in the gallery: nothing to search for")
    ranks = mated_ranks(scores[mated], subjects, probes.subjects[mated])
    true = scores[mated][np.arange(mated.sum()), np.searchsorted(subjects, probes.subjects[mated])]
    fnir = fnir_at_fpir(true, ranks, scores[~mated].max(1), fpirs)
    curve = cmc(ranks, max(RANKS))
    return {
        "gallery_templates": len(gallery.templates),
        "gallery_subjects": len(subjects),
        "mated_probes": int(mated.sum()),
        "non_mated_probes": int((~mated).sum()),
        "cmc": {str(k): float(curve[k - 1]) for k in RANKS},
        "tpir_at_fpir": {k: 1.0 - v if isinstance(v, float) else v for k, v in fnir.items()},
    }


def template_metrics(ts: TemplateSet, pooled: TemplateFeatures) -> dict[str, Any]:
    out: dict[str, Any] = {"templates": len(pooled.ids)}
    if ts.pairs is not None:
        out["verification"] = verify_templates(ts.pairs, pooled)
    if ts.galleries and ts.probes is not None:
        out["identification"] = {name: identify_templates(pooled, g, ts.probes) for name, g in ts.galleries.items()}
    return out


def template_summary(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flat headline numbers: AUC, EER, TAR@FAR (where measurable); per gallery CMC rank-k and
    TPIR@FPIR (where measurable) as `<gallery>_rank1` ..., and their mean over the galleries as
    `rank1` ... (IJB-C results are usually quoted as the mean of G1 and G2)."""
    out: dict[str, float] = {}
    if "verification" in metrics:
        v = metrics["verification"]
        out.update({"auc": v["auc"], "eer": v["eer"]})
        out.update({f"tar_at_far_{k}": x for k, x in v["tar_at_far"].items() if isinstance(x, float)})
    galleries = metrics.get("identification", {})
    for gallery, r in galleries.items():
        out.update({f"{gallery}_rank{k}": x for k, x in r["cmc"].items()})
        out.update({f"{gallery}_tpir_at_fpir_{k}": x for k, x in r["tpir_at_fpir"].items() if isinstance(x, float)})
    for key in [f"rank{k}" for k in RANKS] + [f"tpir_at_fpir_{f:g}" for f in FPIRS]:
        values = [out.get(f"{gallery}_{key}") for gallery in galleries]
        if values and None not in values:  # the galleries' mean, where each measures it
            out[key] = float(np.mean(values))
    return {f"{prefix}{k}": float(x) for k, x in out.items()}


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as a short table for the terminal: a line per pooling and measure."""
    lines = []
    for pooling, m in report["flip" if report["pipeline_options"]["flip"] else "no_flip"].items():
        if "verification" in m:
            tars = "  ".join(f"{k}: {_fmt(x)}" for k, x in m["verification"]["tar_at_far"].items())
            lines.append(f"{pooling:8s} 1:1 AUC {m['verification']['auc']:.4f}  TAR@FAR {tars}")
        for gallery, r in m.get("identification", {}).items():
            ranks = "  ".join(f"rank-{k} {_fmt(x)}" for k, x in r["cmc"].items())
            tpir = "  ".join(f"{k}: {_fmt(x)}" for k, x in r["tpir_at_fpir"].items())
            lines.append(f"{pooling:8s} 1:N {gallery}: {ranks}  TPIR@FPIR {tpir}")
    return lines


def _fmt(x: float | str) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, float) else x


# ---- the protocol -----------------------------------------------------------------------------
@dataclass
class TemplateProtocol:
    """1:1 and 1:N template evaluation of a TemplateSet under one or more poolings, with and
    without flip from one embedding pass. `summary`: the first pooling's numbers unprefixed, the
    others' as `<pooling>_...`; JSON report and ROC PNG (one curve per pooling) in `out_dir`."""

    templates: TemplateSet
    poolings: list[str] = field(default_factory=lambda: ["media", "mean", "quality"])
    quality_file: Path | None = None  # per-image qualities; default: the feature norms
    name: str = "templates"

    def evaluate(
        self, pipeline: RecognitionPipeline, out_dir: str | Path | None = None, progress: bool = False
    ) -> dict[str, Any]:
        for pooling in self.poolings:
            POOLINGS.get(pooling)  # an unknown name fails before the embedding, not after
        ts, start = self.templates, time.perf_counter()
        embedded = pipeline.embed(ts.images, progress=progress, desc=f"embedding ({ts.name})")
        seconds = time.perf_counter() - start
        given = read_quality(self.quality_file, ts.names) if self.quality_file else None
        report: dict[str, Any] = {
            "protocol": self.name,
            "set": ts.name,
            "model": pipeline.model.name,
            "model_digest": pipeline.model.digest,
            "pipeline": pipeline.name,
            "pipeline_options": pipeline.describe(),
            "images": len(ts.images),
            "seconds": seconds,
            "quality": str(self.quality_file) if self.quality_file else "feature norm before normalization",
        }
        pooled: dict[str, dict[str, TemplateFeatures]] = {}
        for key, flip in (("no_flip", False), ("flip", True)):
            quality = given if given is not None else embedded.norm(flip)
            pooled[key] = {p: pool_templates(ts, embedded.get(flip), p, quality) for p in self.poolings}
            report[key] = {p: template_metrics(ts, f) for p, f in pooled[key].items()}
        report["summary_by_flip"] = {key: self._summary(report[key]) for key in ("no_flip", "flip")}
        report["summary"] = report["summary_by_flip"]["flip" if pipeline.flip else "no_flip"]
        if out_dir is not None:
            self._write(Path(out_dir), report, pooled["flip" if pipeline.flip else "no_flip"], pipeline.name)
        return report

    def _summary(self, by_pooling: dict[str, dict[str, Any]]) -> dict[str, float]:
        summary: dict[str, float] = {}
        for k, (pooling, metrics) in enumerate(by_pooling.items()):
            summary.update(template_summary(metrics, "" if k == 0 else f"{pooling}_"))
        return summary

    def _write(self, out: Path, report: dict[str, Any], pooled: dict[str, TemplateFeatures], name: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        pairs = self.templates.pairs
        if pairs is not None:
            curves = {f"{name}, {p} pooling": roc_curve(pair_scores(pairs, f), pairs.same) for p, f in pooled.items()}
            plot_roc(curves, out / "roc.png", title=f"{self.templates.name}: {len(pairs.same)} template pairs")
        write_json(out / "report.json", report)


def template_protocol(
    root: str | Path | None = None,
    csv: str | Path | None = None,
    pairs: str | Path | None = None,
    galleries: list[str] | None = None,
    probes: str | Path | None = None,
    prefix: str = "ijbc",
    images: str | Path | None = None,
    pooling: list[str] | str | None = None,
    quality: str | Path | None = None,
) -> TemplateProtocol:
    """The `templates` protocol: an IJB layout at `root`, or a generic templates `csv` (with
    `pairs`, `galleries`, `probes`); `pooling`: one name or several (default media, mean, quality);
    `quality`: a file of per-image qualities (default: the feature norms)."""
    if (root is None) == (csv is None):
        raise DataError("the templates protocol needs either root (an IJB layout) or csv (a templates CSV)")
    ts = read_ijb(root, prefix, images) if root is not None else read_templates_csv(csv, pairs, galleries or (), probes)
    poolings = [pooling] if isinstance(pooling, str) else list(pooling or ["media", "mean", "quality"])
    return TemplateProtocol(ts, poolings, Path(quality) if quality else None)


# ---- an IJB-layout set from an identity-folder tree ----------------------------------------------
@dataclass
class MadeSet:
    root: Path
    subjects: int
    templates: int
    images: int
    genuine_pairs: int
    impostor_pairs: int
    galleries: dict[str, int]  # gallery -> templates (one per subject)
    probes: int


def write_template_set(
    tree: str | Path,
    out: str | Path,
    min_images: int = 4,
    templates_per_subject: int = 2,
    media_size: int = 2,
    max_impostors: int = 1_000_000,
    seed: int = 0,
    prefix: str = "ijbc",
) -> MadeSet:
    """An IJB-layout template set over `tree/<person>/<image>` (the people with >= min_images):
    each person's sorted images cut into `templates_per_subject` templates, each template's images
    grouped `media_size` at a time into media; pairs: every two templates of a person (genuine)
    and every two of different people (impostor; a random `max_impostors` when there are more);
    1:N: the people in two random halves, G1 and G2 enrolling each person's first template, and
    every other template a probe (mated in one gallery, non-mated in the other). `out/images` is a
    link to `tree`; the generic `templates.csv` and `template_pairs.csv` describe the same set."""
    if templates_per_subject < 2 or min_images < templates_per_subject or media_size < 1:
        raise DataError("need templates_per_subject >= 2, min_images >= templates_per_subject and media_size >= 1")
    tree, out = Path(tree).resolve(), Path(out)
    people = [p for p in identity_tree(tree) if len(p.images) >= min_images]
    if len(people) < 2:
        raise DataError(f"{tree}: {len(people)} people have >= {min_images} images; need two")
    rows: list[tuple[str, int, int, int]] = []  # image name, template, media, subject
    subject_templates: list[list[int]] = []
    template = media = 0
    for subject, person in enumerate(people, 1):
        subject_templates.append([])
        for chunk in np.array_split(np.arange(len(person.images)), templates_per_subject):
            template += 1
            subject_templates[-1].append(template)
            for k, i in enumerate(chunk):
                name = person.images[i].relative_to(tree).as_posix()
                if any(c.isspace() for c in name):
                    raise DataError(f"image names in the IJB layout cannot hold spaces: {name}")
                media += k % media_size == 0  # a new media every media_size images of a template
                rows.append((name, template, media, subject))
    genuine, impostor = _template_pairs(subject_templates, max_impostors, np.random.default_rng(seed))
    halves = np.array_split(np.random.default_rng(seed + 1).permutation(len(people)), 2)
    made = _write_ijb_files(out, tree, prefix, rows, genuine, impostor, subject_templates, halves)
    _write_generic_files(out, rows, genuine, impostor)
    return made


def _template_pairs(
    subject_templates: list[list[int]], max_impostors: int, rng: np.random.Generator
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    genuine = [(a, b) for ts in subject_templates for i, a in enumerate(ts) for b in ts[i + 1 :]]
    owner = np.array([s for s, ts in enumerate(subject_templates) for _ in ts])
    ids = np.array([t for ts in subject_templates for t in ts])
    i, j = np.triu_indices(len(ids), k=1)
    cross = np.flatnonzero(owner[i] != owner[j])
    if len(cross) > max_impostors:
        cross = np.sort(rng.choice(cross, max_impostors, replace=False))
    return genuine, list(zip(ids[i[cross]].tolist(), ids[j[cross]].tolist(), strict=True))


def _write_ijb_files(
    out: Path,
    tree: Path,
    prefix: str,
    rows: list[tuple[str, int, int, int]],
    genuine: list[tuple[int, int]],
    impostor: list[tuple[int, int]],
    subject_templates: list[list[int]],
    halves: list[np.ndarray],
) -> MadeSet:
    meta = out / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    link = out / "images"
    if link.is_symlink() or link.exists():
        if not (link.is_symlink() and link.resolve() == tree):
            raise DataError(f"{link} exists and is not a link to {tree}")
    else:
        link.symlink_to(tree, target_is_directory=True)
    write_text(meta / f"{prefix}_face_tid_mid.txt", "".join(f"{n} {t} {m}\n" for n, t, m, _ in rows))
    pair_lines = [f"{a} {b} 1\n" for a, b in genuine] + [f"{a} {b} 0\n" for a, b in impostor]
    write_text(meta / f"{prefix}_template_pair_label.txt", "".join(pair_lines))
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME\n"
    enrolled = {ts[0] for ts in subject_templates}
    sizes = {}
    for name, half in zip(("G1", "G2"), halves, strict=True):
        subjects = set((half + 1).tolist())
        lines = [f"{t},{s},{n}\n" for n, t, _, s in rows if s in subjects and t in enrolled]
        write_text(meta / f"{prefix}_1N_gallery_{name}.csv", header + "".join(lines))
        sizes[name] = len(subjects)
    probes = [f"{t},{s},{n}\n" for n, t, _, s in rows if t not in enrolled]
    write_text(meta / f"{prefix}_1N_probe_mixed.csv", header + "".join(probes))
    templates = sum(len(ts) for ts in subject_templates)
    return MadeSet(
        out, len(subject_templates), templates, len(rows), len(genuine), len(impostor), sizes, templates - len(enrolled)
    )


def _write_generic_files(
    out: Path, rows: list[tuple[str, int, int, int]], genuine: list[tuple[int, int]], impostor: list[tuple[int, int]]
) -> None:
    lines = [f"{t},{s},images/{n},{m}\n" for n, t, m, s in rows]
    write_text(out / "templates.csv", "template_id,subject_id,path,media_id\n" + "".join(lines))
    pairs = [f"{a},{b},1\n" for a, b in genuine] + [f"{a},{b},0\n" for a, b in impostor]
    write_text(out / "template_pairs.csv", "t1,t2,label\n" + "".join(pairs))
