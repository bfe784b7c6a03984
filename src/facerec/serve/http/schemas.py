"""The shapes of the service's answers, for validation and for the OpenAPI page at /docs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelInfo(BaseModel):
    name: str
    digest: str = Field(description="content digest: embeddings of different digests are not comparable")
    detector: str
    embedding_size: int
    input_size: int
    flip: bool


class FaceOut(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the (EXIF-upright) image")
    landmarks: list[list[float]] = Field(
        description="five (x, y): left eye, right eye, nose tip, left and right mouth corner (left: smaller x)"
    )
    score: float = Field(description="detector confidence")
    quality: float | None = Field(
        description="in [0, 1], higher is better: the server's quality scorer (default stability: agreement of the "
        "face's embeddings under small shifts, zooms, mirroring and noise; see facerec.eval.quality). Always "
        "scored by detect and enrolment; elsewhere null unless the request asks for quality=true"
    )


class EmbeddedFace(FaceOut):
    embedding: list[float] = Field(description="L2-normalized; compare by dot product (cosine)")


class ImageFaces(BaseModel):
    width: int
    height: int
    faces: list[FaceOut]


class ImageEmbeddings(BaseModel):
    width: int
    height: int
    faces: list[EmbeddedFace]


class DetectResponse(BaseModel):
    model: ModelInfo
    images: list[ImageFaces] = Field(description="one entry per image, in request order")


class EmbedResponse(BaseModel):
    model: ModelInfo
    images: list[ImageEmbeddings] = Field(description="one entry per image, in request order")


class VerifyResponse(BaseModel):
    model: ModelInfo
    score: float = Field(description="cosine similarity of the two faces")
    threshold: float
    threshold_source: str = Field(description="'request', or the model card's calibration data")
    same: bool = Field(description="score >= threshold")
    faces: list[FaceOut] = Field(description="the face compared in each image")


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    model: ModelInfo


class ErrorBody(BaseModel):
    code: str = Field(description="stable, for programs: no_face, several_faces, not_an_image, unauthorized, ...")
    message: str = Field(description="for people")


class ErrorResponse(BaseModel):
    error: ErrorBody


def image_body(**options: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of an image endpoint: multipart files or base64 JSON, with
    `options` (name -> JSON schema) beside the images. The endpoints read the body themselves,
    so FastAPI cannot infer it."""
    common = {"model": {"type": "string", "description": "fail unless the server runs this model (name or digest)"}}
    fields = {**common, **options}
    files = {"type": "array", "items": {"type": "string", "format": "binary"}}
    encoded = {"type": "array", "items": {"type": "string", "format": "byte"}, "description": "base64 or data URLs"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"images": files, **fields}, "required": ["images"]}
                },
                "application/json": {
                    "schema": {"type": "object", "properties": {"images": encoded, **fields}, "required": ["images"]}
                },
            },
        }
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "malformed JSON or form, invalid base64",
        401: "no API key, or an unknown or revoked one",
        403: "the key lacks the scope",
        413: "request, image count or image pixels over the limit",
        415: "neither multipart/form-data nor application/json",
        422: "not an image, truncated image, no face, several faces, wrong model, bad option, quality too low",
        503: "the model is not loaded yet",
    }.items()
}
