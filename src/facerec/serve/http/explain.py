"""The explanation endpoint: which regions of two faces drive their similarity
(facerec.analysis.explain), as JSON with the overlay PNG in base64.

An explanation costs one network pass per occluded crop (and, for the gradient map, a forward
and backward pass per integration step), so it runs in the state's thread pool rather than
through the batcher, whose batches are meant for single crops; the grid is capped per face.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.requests import Request

from facerec.analysis.explain import ExplainOptions, explain_crops, occlusion_positions, overlay_png
from facerec.serve.http.auth import require
from facerec.serve.http.errors import ServiceError
from facerec.serve.http.faces import one_face, several_policy
from facerec.serve.http.routes import SEVERAL_OPTION, face_json, read_images
from facerec.serve.http.schemas import ERRORS, FaceOut, ModelInfo, image_body
from facerec.serve.http.state import service_state
from facerec.serve.keys import ApiKey

router = APIRouter(prefix="/v1", responses=ERRORS)

CompareKey = Annotated[ApiKey, Depends(require("embed"))]  # compares two faces, returns no vector
METHODS = {"occlusion": ("occlusion",), "gradient": ("gradient",), "both": ("occlusion", "gradient")}
DEFAULT_METHOD = "occlusion"  # works for every model (the gradient map needs a torch model)
MAX_PATCHES = 1024  # occluded crops per face: bounds a request's cost
MAX_STEPS = 128  # integrated-gradients steps (forward + backward passes) per face

METHOD_OPTION = {
    "type": "string",
    "enum": list(METHODS),
    "description": f"occlusion (any model), gradient (integrated gradients, torch models only) or both; "
    f"default {DEFAULT_METHOD}",
}
PATCH_OPTION = {"type": "integer", "description": "occlusion patch side in crop pixels (default: a quarter)"}
STRIDE_OPTION = {"type": "integer", "description": "occlusion stride in crop pixels (default: half the patch)"}
STEPS_OPTION = {"type": "integer", "description": f"integrated-gradients steps (default 32, at most {MAX_STEPS})"}


class ExplainResponse(BaseModel):
    model: ModelInfo
    score: float = Field(description="cosine similarity of the two faces")
    threshold: float | None = Field(description="the model card's for the detector, if it has one")
    same: bool | None = Field(description="score >= threshold (null without a threshold)")
    options: dict[str, Any] = Field(description="methods, patch, stride, steps as used")
    maps: dict[str, dict[str, Any]] = Field(
        description="per face (a, b) and method: top regions (box x0, y0, x1, y1 in crop pixels, mean value), "
        "the mean around each landmark, sum/max/min; values are in units of cosine (positive: raises the score)"
    )
    faces: list[FaceOut] = Field(description="the face explained in each image")
    overlay_png: str = Field(description="base64 PNG: each aligned crop with each method's map over it")


@router.post(
    "/explain",
    response_model=ExplainResponse,
    openapi_extra=image_body(
        several=SEVERAL_OPTION, method=METHOD_OPTION, patch=PATCH_OPTION, stride=STRIDE_OPTION, steps=STEPS_OPTION
    ),
)
async def explain(request: Request, _: CompareKey) -> dict[str, Any]:
    """Which regions of two faces drive their similarity: occlusion sensitivity and/or
    integrated gradients of their cosine, one face per image (or `several=largest`)."""
    state = service_state(request)
    job = await read_images(request, state)
    if len(job.images) != 2:
        raise ServiceError(422, "wrong_image_count", f"explain compares two images, got {len(job.images)}")
    several = several_policy(job.options.get("several"))
    options = explain_options(job.options, state.service.pipeline.model.input_size)
    sightings = await state.see_all(job.images)
    faces = [one_face(s, i, several) for i, s in enumerate(sightings)]
    crops = [crop for s, f in zip(sightings, faces, strict=True) for crop in await state.crops(s, [f])]
    explanation = await state.off_loop(explain_crops, state.service.pipeline, crops[0], crops[1], options)
    summary = explanation.summary()
    return {
        "model": state.service.describe(),
        **{key: summary[key] for key in ("score", "threshold", "same", "options")},
        "maps": summary["faces"],
        "faces": [face_json(f, state) for f in faces],
        "overlay_png": base64.b64encode(await state.off_loop(overlay_png, explanation)).decode("ascii"),
    }


def explain_options(fields: dict[str, Any], size: int) -> ExplainOptions:
    """The request's method, patch, stride and steps, checked (the library checks the ranges)."""
    method = str(fields.get("method", DEFAULT_METHOD))
    if method not in METHODS:
        raise ServiceError(422, "invalid_option", f"method must be one of {', '.join(METHODS)}, not '{method}'")
    patch, stride, steps = (_integer(fields.get(name), name) for name in ("patch", "stride", "steps"))
    if steps is not None and steps > MAX_STEPS:
        raise ServiceError(422, "invalid_option", f"steps must be at most {MAX_STEPS}, not {steps}")
    options = ExplainOptions(METHODS[method], patch, stride, ExplainOptions.steps if steps is None else steps).resolved(
        size
    )
    patches = len(occlusion_positions(size, int(options.patch or 0), int(options.stride or 0))) ** 2
    if "occlusion" in options.methods and patches > MAX_PATCHES:
        raise ServiceError(
            422, "invalid_option", f"{patches} occlusion patches per face; at most {MAX_PATCHES}: raise the stride"
        )
    return options


def _integer(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ServiceError(422, "invalid_option", f"{name} must be an integer, not '{value}'") from None
