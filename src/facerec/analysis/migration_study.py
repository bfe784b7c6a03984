"""The migration table on LFW: two models embed the View 2 pair images; calibration faces come
from some folds, the gallery and the probes from others (people disjoint), and the gallery
is moved each way between the models (analysis/migration.py). Used by `facerec analyze migration`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from facerec.analysis import migration
from facerec.analysis.common import ImageSet, lfw_images
from facerec.analysis.studies import Source, short_name
from facerec.core.files import write_json, write_text
from facerec.errors import DataError


def rerooted(images: ImageSet, root: Path) -> ImageSet:
    """The same images under another identity-folder tree (e.g. a pre-aligned copy): root/<person>/<file>."""
    paths = [root / p.parent.name / p.name for p in images.paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{len(missing)} of {len(paths)} images are not under {root} (e.g. {missing[0]})")
    return ImageSet(paths, images.identities, images.folds)


def migration_study(
    source: Source,
    models: list[tuple[str, str, Path | None]],  # (model, detector, image root or None: LFW's own)
    calibration_folds: list[int],
    eval_folds: list[int],
    sizes: tuple[int, ...],
    repeats: int,
    out: Path,
) -> dict[str, Any]:
    """Both directions between the two models; report.json, migration.png and table.md in `out`."""
    if source.lfw is None:
        raise DataError("the migration study runs on LFW View 2 folds: give --lfw ROOT")
    if set(calibration_folds) & set(eval_folds):
        raise DataError(f"calibration folds {calibration_folds} and evaluation folds {eval_folds} overlap")
    images = lfw_images(source.lfw, sorted(calibration_folds + eval_folds))
    emb = [source.embed(rerooted(images, root) if root else images, m, d) for m, d, root in models]
    calibration_people = np.unique(images.identities[np.isin(images.folds, calibration_folds)])
    parts = migration.split(images.identities, calibration_people)
    names = [short_name(m) for m, _, _ in models]
    ids = images.identities
    reports = {
        f"{names[0]} -> {names[1]}": migration.migration_table(emb[0], emb[1], ids, parts, sizes, repeats),
        f"{names[1]} -> {names[0]}": migration.migration_table(emb[1], emb[0], ids, parts, sizes, repeats),
    }
    out.mkdir(parents=True, exist_ok=True)
    migration.plot(reports, out / "migration.png")
    write_text(out / "table.md", table(reports))
    report = {
        "models": [{"model": m, "detector": d, "images": str(root or source.lfw)} for m, d, root in models],
        "calibration_folds": calibration_folds,
        "eval_folds": eval_folds,
        "directions": reports,
        "command": "facerec " + " ".join(sys.argv[1:]) if sys.argv and "facerec" in sys.argv[0] else None,
    }
    write_json(out / "report.json", report)
    return report


def table(reports: dict[str, dict[str, Any]]) -> str:
    """The markdown table of docs/analysis: per direction, re-enrolled, the old model, then the
    mapped gallery per calibration size (mean +- std over the calibration draws)."""
    fars = list(next(iter(reports.values()))["re_enrolled"]["tar_at_far"])
    lines = [
        "| old -> new | gallery | calibration faces | loss (1 - cos) | rank-1 | "
        + " | ".join(f"TAR@FAR={f}" for f in fars)
        + " |",
        "|---" * (5 + len(fars)) + "|",
    ]
    for title, r in reports.items():
        for label, row in (("enrolled again (new model)", r["re_enrolled"]), ("old model, old probes", r["old_model"])):
            tars = " | ".join(_pct(row["tar_at_far"][f]) for f in fars)
            lines.append(f"| {title} | {label} | | | {_pct(row['rank1'])} | {tars} |")
        for row in r["mapped"]:
            if "rank1" not in row:
                continue
            tars = " | ".join(_pct(row["tar_at_far"][f]) for f in fars)
            loss = f"{row['loss']['mean']:.3f}"
            lines.append(f"| {title} | mapped | {row['calibration']:,} | {loss} | {_pct(row['rank1'])} | {tars} |")
    return "\n".join(lines) + "\n"


def _pct(value: Any) -> str:
    if isinstance(value, dict):
        return f"{100 * value['mean']:.1f}% +- {100 * value['std']:.1f}"
    if isinstance(value, float | int):
        return f"{100 * value:.1f}%"
    return str(value)
