"""Moving a gallery to a new model without asking everyone to enroll again.

Faces whose aligned crop the gallery kept (`keep_crops`) are embedded again by the new model:
the result is what enrolling them again would give, up to the resampling of the kept crop.
Faces without a crop have only their old vector: it is carried into the new model's space by the
ridge map of analysis/migration.py, fitted on a calibration set (faces the operator embeds with
both models, e.g. a folder of consenting staff or a public set; never the gallery's people, who
need not be there). What a mapped gallery loses against one enrolled again is measured in
docs/analysis/migration.

The migrated gallery is a *new* gallery beside the old one (never the old one changed in place):
the old vectors stay until the operator has checked the new gallery and deletes the old one,
services still running the old model keep working meanwhile, and a map that turns out too lossy
costs nothing. The new gallery records how it was made (`GalleryRecord.migration`): from which
gallery and model, how many faces were embedded again and how many mapped, the calibration size
and the map's measured loss; each face's metadata names the face it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facerec.analysis.migration import FittedMap, fit_map
from facerec.core.images import image_files
from facerec.errors import DataError
from facerec.pipeline import RecognitionPipeline
from facerec.serve.store import GalleryRecord, GalleryStore, NewFace, StoreError
from facerec.serve.store.base import refuse_other_model, utc_now

RE_EMBEDDED, MAPPED = "re-embedded from the kept crop", "mapped"


@dataclass
class Calibration:
    """The same faces embedded by the old and by the new model (rows in step)."""

    old: np.ndarray
    new: np.ndarray
    source: str  # where the faces came from, for the record


@dataclass
class Migration:
    gallery: GalleryRecord  # the new gallery
    re_embedded: int
    mapped: int
    fitted: FittedMap | None  # the map, when some faces were mapped


def calibration_from_folder(
    folder: str | Path, old: RecognitionPipeline, new: RecognitionPipeline, progress: bool = True
) -> Calibration:
    """Every image under `folder` embedded by both pipelines; images where either finds no face
    are left out."""
    paths = image_files(folder)
    both = [(a, b) for a, b in zip(old.run(paths, progress=progress), new.run(paths, progress=progress), strict=True)]
    rows = [(a.embedding, b.embedding) for a, b in both if a.embedding is not None and b.embedding is not None]
    if not rows:
        raise DataError(f"calibration folder {folder}: no image with a face for both models")
    return Calibration(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]), str(folder))


def migrate_gallery(
    store: GalleryStore,
    name: str,
    new: RecognitionPipeline,
    target: str,
    calibration: Calibration | None = None,
    progress: bool = True,
) -> Migration:
    """Gallery `name` embedded by the `new` pipeline as the new gallery `target`, all or nothing:
    kept crops embedded again, the other faces mapped with a map fitted on `calibration`."""
    old = store.gallery(name)
    if old.digest == new.model.digest:
        raise StoreError(f"gallery '{name}' already holds embeddings of model '{new.model.name}': nothing to migrate")
    faces = store.faces(name)
    if not faces:
        raise StoreError(f"gallery '{name}' has no face to migrate")
    crops = store.crops(name, [f.id for f in faces]) if old.keep_crops else [None] * len(faces)
    vectors, fitted = new_vectors(store, old, new, [f.id for f in faces], crops, calibration, progress)
    re_embedded = sum(c is not None for c in crops)
    record = migration_record(old, re_embedded, len(faces) - re_embedded, fitted, calibration)
    dimension = new.model.card.embedding_size
    created = store.create_gallery(
        target, new.model.name, new.model.digest, new.describe(), dimension, None, old.keep_crops, record
    )
    try:
        for subject in store.subjects(name):  # people without faces are carried too, with their metadata
            store.create_subject(target, subject.name, subject.metadata)
        carried = [
            NewFace(
                f.subject, v, {**f.metadata, "migrated_from_face": f.id, "how": MAPPED if c is None else RE_EMBEDDED}, c
            )
            for f, v, c in zip(faces, vectors, crops, strict=True)
        ]
        store.add_faces(target, carried, create_subjects=False)
    except BaseException:
        store.delete_gallery(target)  # all or nothing: no half-migrated gallery is left
        raise
    return Migration(created, re_embedded, len(faces) - re_embedded, fitted)


def new_vectors(
    store: GalleryStore,
    old: GalleryRecord,
    new: RecognitionPipeline,
    face_ids: list[int],
    crops: Sequence[np.ndarray | None],
    calibration: Calibration | None,
    progress: bool,
) -> tuple[np.ndarray, FittedMap | None]:
    """The new model's vector of every face: from its kept crop where there is one, else mapped."""
    vectors = np.zeros((len(face_ids), new.model.card.embedding_size), np.float32)
    kept = [i for i, c in enumerate(crops) if c is not None]
    if kept:
        vectors[kept] = new.embed_kept([crops[i] for i in kept], progress)
    missing = [i for i, c in enumerate(crops) if c is None]
    if not missing:
        return vectors, None
    if calibration is None:
        raise StoreError(
            f"{len(missing)} faces of gallery '{old.name}' have no kept crop: give a calibration set "
            "(faces embedded by both models) to map their vectors, or enroll them again"
        )
    check_dimensions(calibration, old.dimension, vectors.shape[1])
    fitted = fit_map(calibration.old, calibration.new)
    vectors[missing] = fitted.apply(store.vectors(old.name, [face_ids[i] for i in missing]))
    return vectors, fitted


def check_dimensions(calibration: Calibration, old: int, new: int) -> None:
    if calibration.old.shape[1:] != (old,) or calibration.new.shape[1:] != (new,):
        raise DataError(
            f"calibration embeddings of sizes {calibration.old.shape[1:]} and {calibration.new.shape[1:]} "
            f"do not match the old gallery's ({old}) and the new model's ({new})"
        )


def migration_record(
    old: GalleryRecord, re_embedded: int, mapped: int, fitted: FittedMap | None, calibration: Calibration | None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "from_gallery": old.name,
        "from_model": old.model,
        "from_digest": old.digest,
        "from_pipeline": old.pipeline,
        "re_embedded": re_embedded,
        "mapped": mapped,
        "when": utc_now(),
    }
    if fitted is not None and calibration is not None:
        record["map"] = {**fitted.record(), "calibration_source": calibration.source}
    return record


def migrate_to_model(
    store: GalleryStore,
    name: str,
    to_model: str,
    target: str | None = None,
    calibration_folder: str | Path | None = None,
    from_model: str | None = None,
    detector: str | None = None,
    device: str = "auto",
    runtime: str | None = None,
) -> Migration:
    """`migrate_gallery` from model names: the new model sees faces through `detector` (default:
    the gallery's) with the gallery's flip setting; the calibration folder is embedded by the
    gallery's model (`from_model`, default the name it recorded; its digest is checked) through
    the gallery's detector, and by the new model."""
    old = store.gallery(name)
    options = {"several": "largest", "missing": "skip", "flip": bool(old.pipeline.get("flip", True)), "device": device}
    old_detector = str(old.pipeline.get("detector", "mtcnn"))
    new = RecognitionPipeline.load(to_model, runtime, detector=detector or old_detector, **options)
    calibration = None
    if calibration_folder is not None:
        before = RecognitionPipeline.load(from_model or old.model, runtime, detector=old_detector, **options)
        refuse_other_model(old, before.model.name, before.model.digest, store.location)
        calibration = calibration_from_folder(calibration_folder, before, new)
    return migrate_gallery(store, name, new, target or f"{name}-{new.model.name}", calibration)
