"""The face endpoints: detect every face, embed every face, verify two images."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends
from starlette.requests import Request

from facerec.align.types import Face
from facerec.serve.http.auth import require
from facerec.serve.http.errors import ServiceError
from facerec.serve.http.faces import Sighting, one_face, quality_wanted, several_policy, threshold_option
from facerec.serve.http.images import ImageRequest, read_image_request
from facerec.serve.http.schemas import ERRORS, DetectResponse, EmbedResponse, VerifyResponse, image_body
from facerec.serve.http.state import ServiceState, service_state
from facerec.serve.keys import EMBEDDINGS_READ, ApiKey

router = APIRouter(prefix="/v1", responses=ERRORS)

DetectKey = Annotated[ApiKey, Depends(require("detect"))]
EmbeddingsKey = Annotated[ApiKey, Depends(require("embed", EMBEDDINGS_READ))]
CompareKey = Annotated[ApiKey, Depends(require("embed"))]  # compares embeddings, returns none

SEVERAL_OPTION = {
    "type": "string",
    "enum": ["error", "largest"],
    "description": "an image with several faces: refuse it (default), or compare its largest face",
}
THRESHOLD_OPTION = {"type": "number", "description": "cosine threshold (default: the model card's for the detector)"}
QUALITY_OPTION = {"type": "boolean", "description": "also score each face's quality (extra model calls; default false)"}


async def read_images(request: Request, state: ServiceState) -> ImageRequest:
    settings = state.settings
    job = await read_image_request(request, settings.max_request_bytes, settings.max_images)
    state.service.check_model(job.options.get("model"))
    return job


def face_json(face: Face, state: ServiceState, quality: float | None = None) -> dict[str, Any]:
    """A face for the answer; `quality` None where it was not scored (not asked for)."""
    return {
        "box": [round(float(v), 2) for v in face.box],
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
        "score": round(float(face.score), 4),
        "quality": None if quality is None else round(quality, 4),
    }


async def faces_json(sighting: Sighting, faces: list[Face], state: ServiceState, scored: bool) -> list[dict[str, Any]]:
    """face_json of each face, with its quality when `scored` (all faces in one model call)."""
    qualities = await state.qualities(sighting, faces) if scored else [None] * len(faces)
    return [face_json(f, state, q) for f, q in zip(faces, qualities, strict=True)]


@router.post("/detect", response_model=DetectResponse, openapi_extra=image_body())
async def detect(request: Request, _: DetectKey) -> dict[str, Any]:
    """Every face of each image: box, five landmarks, detector score and quality."""
    state = service_state(request)
    sightings = await state.see_all((await read_images(request, state)).images)
    images = [
        {"width": s.image.shape[1], "height": s.image.shape[0], "faces": await faces_json(s, s.faces, state, True)}
        for s in sightings
    ]
    return {"model": state.service.describe(), "images": images}


@router.post("/embed", response_model=EmbedResponse, openapi_extra=image_body(quality=QUALITY_OPTION))
async def embed(request: Request, _: EmbeddingsKey) -> dict[str, Any]:
    """Every face of each image with its embedding; needs the scopes embed and embeddings:read."""
    state = service_state(request)
    job = await read_images(request, state)
    scored = quality_wanted(job.options.get("quality"))
    sightings = await state.see_all(job.images)
    crops = [crop for s in sightings for crop in await state.crops(s, s.faces)]
    rows = iter(await state.batcher.embed(crops))
    images = []
    for s in sightings:
        faces = [{**face, "embedding": next(rows).tolist()} for face in await faces_json(s, s.faces, state, scored)]
        images.append({"width": s.image.shape[1], "height": s.image.shape[0], "faces": faces})
    return {"model": state.service.describe(), "images": images}


@router.post(
    "/verify",
    response_model=VerifyResponse,
    openapi_extra=image_body(several=SEVERAL_OPTION, threshold=THRESHOLD_OPTION, quality=QUALITY_OPTION),
)
async def verify(request: Request, _: CompareKey) -> dict[str, Any]:
    """Are the faces of two images the same person? One face each (or `several=largest`)."""
    state = service_state(request)
    job = await read_images(request, state)
    if len(job.images) != 2:
        raise ServiceError(422, "wrong_image_count", f"verify compares two images, got {len(job.images)}")
    several = several_policy(job.options.get("several"))
    threshold, source = threshold_option(job.options.get("threshold"), state.service.threshold())
    scored = quality_wanted(job.options.get("quality"))
    sightings = await state.see_all(job.images)
    faces = [one_face(s, i, several) for i, s in enumerate(sightings)]
    crops = [crop for s, f in zip(sightings, faces, strict=True) for crop in await state.crops(s, [f])]
    first, second = await state.batcher.embed(crops)
    score = float(np.dot(first, second))
    return {
        "model": state.service.describe(),
        "score": score,
        "threshold": threshold,
        "threshold_source": source,
        "same": score >= threshold,
        "faces": [(await faces_json(s, [f], state, scored))[0] for s, f in zip(sightings, faces, strict=True)],
    }
