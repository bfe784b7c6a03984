"""The gallery endpoints: galleries, subjects and faces in the gallery store, and searches.

Store calls block (SQLite, an fsync per audit line), so each runs in the state's thread pool
together with its audit line. No answer contains a vector: searches return subjects, face ids
and scores; enrolment returns face ids.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.requests import Request

from facerec.align.kept import kept_from_landmarks
from facerec.models.card import ThresholdRecord
from facerec.serve.audit import AuditLog
from facerec.serve.http.auth import authenticate, require, require_gallery
from facerec.serve.http.errors import ServiceError
from facerec.serve.http.faces import (
    min_quality_option,
    one_face,
    quality_gate,
    quality_wanted,
    several_policy,
    threshold_option,
)
from facerec.serve.http.routes import (
    QUALITY_OPTION,
    SEVERAL_OPTION,
    THRESHOLD_OPTION,
    face_json,
    faces_json,
    read_images,
)
from facerec.serve.http.schemas import ERRORS, ErrorResponse, image_body
from facerec.serve.http.state import ServiceState, service_state
from facerec.serve.keys import ADMIN, ApiKey
from facerec.serve.store import FaceRecord, GalleryRecord, GalleryStore, Match, NewFace

UNKNOWN = "unknown"  # the open-set answer: nobody in the gallery scores at or above the threshold
DEFAULT_TOP_K, MAX_TOP_K = 5, 100

STORE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "unknown gallery, subject or face"},
    409: {"model": ErrorResponse, "description": "the gallery or subject exists already"},
}
router = APIRouter(prefix="/v1/galleries", tags=["galleries"], responses={**ERRORS, **STORE_ERRORS})

AdminKey = Annotated[ApiKey, Depends(require(ADMIN))]
EnrollKey = Annotated[ApiKey, Depends(require("enroll"))]
DeleteKey = Annotated[ApiKey, Depends(require("delete"))]
SearchKey = Annotated[ApiKey, Depends(require("search"))]
AnyKey = Annotated[ApiKey, Depends(authenticate)]

METADATA_OPTION = {
    "type": "string",
    "description": "JSON object stored with every face, or a JSON list of objects, one per image",
}
TOP_K_OPTION = {"type": "integer", "description": f"subjects per face, best first (default {DEFAULT_TOP_K})"}
ALL_FACES_OPTION = {"type": "boolean", "description": "search every face of the image (default: its one face)"}
MIN_QUALITY_OPTION = {
    "type": "number",
    "description": "refuse the request (422 quality_too_low) when a face's quality is below this, in [0, 1]",
}


class NewGallery(BaseModel):
    name: str
    threshold: float | None = Field(None, ge=-1, le=1, description="default: the model card's for the pipeline")
    keep_crops: bool = Field(
        False, description="keep each face's aligned crop (sealed like the vectors): a later model re-embeds them"
    )


class NewSubject(BaseModel):
    name: str
    metadata: dict[str, Any] = Field(default_factory=dict)


# ---- helpers ---------------------------------------------------------------------------------
def _store(request: Request) -> tuple[ServiceState, GalleryStore, AuditLog]:
    state = service_state(request)
    if state.store is None or state.audit is None:
        raise ServiceError(
            503,
            "no_store",
            "no gallery store: start the server with --store-key-file (or $FACEREC_STORE_KEY) or --store-plaintext",
        )
    return state, state.store, state.audit


def _gallery_json(record: GalleryRecord, store: GalleryStore) -> dict[str, Any]:
    counts = store.counts(record.name)
    return {
        "name": record.name,
        "model": record.model,
        "digest": record.digest,
        "pipeline": record.pipeline,
        "dimension": record.dimension,
        "threshold": record.threshold,
        "keep_crops": record.keep_crops,
        "created": record.created,
        "subjects": counts.subjects,
        "faces": counts.faces,
    }


def _face_record_json(record: FaceRecord) -> dict[str, Any]:
    return {"id": record.id, "subject": record.subject, "metadata": record.metadata, "created": record.created}


def _check_model(state: ServiceState, store: GalleryStore, gallery: str) -> GalleryRecord:
    """The gallery, refused (422 wrong_model) when another model's embeddings are in it."""
    model = state.service.pipeline.model
    return store.check_model(gallery, model.name, model.digest)


def _face_metadata(value: Any, count: int) -> list[dict[str, Any]]:
    """One metadata object per image: the same for all, or a list with one per image."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ServiceError(422, "invalid_option", f"metadata is not JSON: {exc}") from exc
    if value is None:
        return [{} for _ in range(count)]
    if isinstance(value, dict):
        return [value for _ in range(count)]
    if isinstance(value, list) and len(value) == count and all(isinstance(item, dict) for item in value):
        return value
    raise ServiceError(422, "invalid_option", f"metadata must be a JSON object or a list of {count} objects")


def _top_k(value: Any) -> int:
    try:
        top_k = DEFAULT_TOP_K if value is None else int(value)
    except (TypeError, ValueError):
        top_k = 0
    if not 1 <= top_k <= MAX_TOP_K:
        raise ServiceError(422, "invalid_option", f"top_k must be an integer in [1, {MAX_TOP_K}], not '{value}'")
    return top_k


def _flag(value: Any, name: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ServiceError(422, "invalid_option", f"{name} must be true or false, not '{value}'")
    return text in ("true", "1")


def search_threshold(asked: Any, gallery: GalleryRecord, card: ThresholdRecord | None) -> tuple[float, str]:
    """The request's threshold, else the gallery's (its operator's), else the model card's."""
    if asked is None and gallery.threshold is not None:
        return gallery.threshold, "gallery"
    return threshold_option(asked, card)


def _answer(matches: list[Match], threshold: float) -> dict[str, Any]:
    best = matches[0] if matches else None
    known = best is not None and best.score >= threshold
    return {
        "subject": best.subject if known else UNKNOWN,
        "known": known,  # tells the answer "unknown" from a subject of that name
        "score": None if best is None else best.score,
        "matches": [{"subject": m.subject, "face_id": m.face_id, "score": m.score} for m in matches],
    }


# ---- galleries -------------------------------------------------------------------------------
@router.post("", status_code=201)
async def create_gallery(body: NewGallery, request: Request, key: AdminKey) -> dict[str, Any]:
    """A new gallery for the serving model and pipeline (scope admin)."""
    state, store, audit = _store(request)
    pipeline = state.service.pipeline

    def work() -> dict[str, Any]:
        model = pipeline.model
        dimension = model.card.embedding_size
        record = store.create_gallery(
            body.name, model.name, model.digest, pipeline.describe(), dimension, body.threshold, body.keep_crops
        )
        audit.record(key.id, "create_gallery", record.name)
        return _gallery_json(record, store)

    return await state.off_loop(work)


@router.get("")
async def list_galleries(request: Request, key: AnyKey) -> dict[str, Any]:
    """The galleries this key is granted, with their counts."""
    state, store, _ = _store(request)

    def work() -> list[dict[str, Any]]:
        return [_gallery_json(g, store) for g in store.galleries() if key.allows_gallery(g.name)]

    return {"galleries": await state.off_loop(work)}


@router.delete("/{gallery}")
async def delete_gallery(gallery: str, request: Request, key: AdminKey) -> dict[str, Any]:
    """Erase a gallery with every subject and face in it (scope admin)."""
    state, store, audit = _store(request)

    def work() -> None:
        store.delete_gallery(gallery)
        audit.record(key.id, "delete_gallery", gallery)

    await state.off_loop(work)
    return {"deleted": gallery}


# ---- subjects --------------------------------------------------------------------------------
@router.post("/{gallery}/subjects", status_code=201)
async def create_subject(gallery: str, body: NewSubject, request: Request, key: EnrollKey) -> dict[str, Any]:
    require_gallery(key, gallery)
    state, store, audit = _store(request)

    def work() -> dict[str, Any]:
        record = store.create_subject(gallery, body.name, body.metadata)
        audit.record(key.id, "create_subject", gallery, subject=record.name)
        return {"gallery": gallery, "name": record.name, "metadata": record.metadata, "created": record.created}

    return await state.off_loop(work)


@router.get("/{gallery}/subjects")
async def list_subjects(gallery: str, request: Request, key: EnrollKey) -> dict[str, Any]:
    """The subjects of a gallery with their metadata (scope enroll)."""
    require_gallery(key, gallery)
    state, store, _ = _store(request)
    records = await state.off_loop(store.subjects, gallery)
    subjects = [{"name": s.name, "metadata": s.metadata, "created": s.created} for s in records]
    return {"gallery": gallery, "subjects": subjects}


@router.delete("/{gallery}/subjects/{subject}")
async def delete_subject(gallery: str, subject: str, request: Request, key: DeleteKey) -> dict[str, Any]:
    """Erase a subject and all its faces: never returned by a search again (scope delete)."""
    require_gallery(key, gallery)
    state, store, audit = _store(request)

    def work() -> list[int]:
        face_ids = [face.id for face in store.faces(gallery, subject)]
        store.delete_subject(gallery, subject)
        audit.record(key.id, "delete_subject", gallery, subject=subject, faces=face_ids)
        return face_ids

    return {"gallery": gallery, "deleted": subject, "faces": await state.off_loop(work)}


# ---- faces -----------------------------------------------------------------------------------
@router.post(
    "/{gallery}/subjects/{subject}/faces",
    status_code=201,
    openapi_extra=image_body(several=SEVERAL_OPTION, metadata=METADATA_OPTION, min_quality=MIN_QUALITY_OPTION),
)
async def add_faces(gallery: str, subject: str, request: Request, key: EnrollKey) -> dict[str, Any]:
    """Enroll one face per image into an existing subject, all or none (scope enroll); with
    min_quality, none when a face's quality is below it."""
    require_gallery(key, gallery)
    state, store, audit = _store(request)
    job = await read_images(request, state)
    several = several_policy(job.options.get("several"))
    metadata = _face_metadata(job.options.get("metadata"), len(job.images))
    min_quality = min_quality_option(job.options.get("min_quality"))
    record = await state.off_loop(_check_model, state, store, gallery)  # before the costly part
    sightings = await state.see_all(job.images)
    faces = [one_face(s, i, several) for i, s in enumerate(sightings)]
    qualities = [(await state.qualities(s, [f]))[0] for s, f in zip(sightings, faces, strict=True)]
    quality_gate(qualities, min_quality, state.service.scorer.name)
    crops = [crop for s, f in zip(sightings, faces, strict=True) for crop in await state.crops(s, [f])]
    vectors = await state.batcher.embed(crops)
    # a gallery that keeps crops keeps them in the model-independent frame a later model re-embeds
    kept = [
        kept_from_landmarks(s.image, f.landmarks) if record.keep_crops else None
        for s, f in zip(sightings, faces, strict=True)
    ]
    new = [NewFace(subject, v, m, c) for v, m, c in zip(vectors, metadata, kept, strict=True)]

    def work() -> list[FaceRecord]:
        records = store.add_faces(gallery, new, create_subjects=False)
        audit.record(key.id, "add_faces", gallery, subject=subject, faces=[r.id for r in records])
        return records

    records = await state.off_loop(work)
    return {
        "gallery": gallery,
        "subject": subject,
        "faces": [
            {**_face_record_json(r), "face": face_json(f, state, q)}
            for r, f, q in zip(records, faces, qualities, strict=True)
        ],
    }


@router.delete("/{gallery}/faces/{face_id}")
async def delete_face(gallery: str, face_id: int, request: Request, key: DeleteKey) -> dict[str, Any]:
    require_gallery(key, gallery)
    state, store, audit = _store(request)

    def work() -> None:
        store.delete_face(gallery, face_id)
        audit.record(key.id, "delete_face", gallery, faces=[face_id])

    await state.off_loop(work)
    return {"gallery": gallery, "deleted": face_id}


# ---- search ----------------------------------------------------------------------------------
@router.post(
    "/{gallery}/search",
    openapi_extra=image_body(
        several=SEVERAL_OPTION,
        threshold=THRESHOLD_OPTION,
        top_k=TOP_K_OPTION,
        all_faces=ALL_FACES_OPTION,
        quality=QUALITY_OPTION,
    ),
)
async def search(gallery: str, request: Request, key: SearchKey) -> dict[str, Any]:
    """Who is in the image? Each face searched gets the best subject at or above the threshold
    (request, else gallery, else model card), or "unknown" (scope search)."""
    require_gallery(key, gallery)
    state, store, audit = _store(request)
    job = await read_images(request, state)
    if len(job.images) != 1:
        raise ServiceError(422, "wrong_image_count", f"search takes one image, got {len(job.images)}")
    top_k, all_faces = _top_k(job.options.get("top_k")), _flag(job.options.get("all_faces"), "all_faces")
    several = several_policy(job.options.get("several"))
    scored = quality_wanted(job.options.get("quality"))
    record = await state.off_loop(_check_model, state, store, gallery)
    threshold, source = search_threshold(job.options.get("threshold"), record, state.service.threshold())
    sighting = (await state.see_all(job.images))[0]
    faces = sighting.faces if all_faces else [one_face(sighting, 0, several)]
    vectors = await state.batcher.embed(await state.crops(sighting, faces)) if faces else np.zeros((0, 0))

    def work() -> list[dict[str, Any]]:
        found = store.search(gallery, vectors, top_k) if faces else []
        answers = [_answer(matches, threshold) for matches in found]
        audit.record(key.id, "search", gallery, subjects=[a["subject"] for a in answers])
        return answers

    answers = await state.off_loop(work)
    return {
        "model": state.service.describe(),
        "gallery": gallery,
        "threshold": threshold,
        "threshold_source": source,
        "faces": [
            {**answer, "face": face}
            for answer, face in zip(answers, await faces_json(sighting, faces, state, scored), strict=True)
        ],
    }
