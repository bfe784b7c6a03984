"""Images into the service: a request's body (multipart files or base64 JSON) read under a size
limit, then each image identified by its content, checked against a pixel limit before it is
decoded, and decoded completely (a truncated file is an error, not a gray half-image)."""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from facerec.serve.http.errors import ServiceError
from facerec.serve.http.tracking import stage

# Formats a client may send; PIL knows others (EPS calls Ghostscript, for one) that have no
# place in a face service.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
OPTION_FIELDS = (
    "model",
    "several",
    "threshold",
    "top_k",
    "all_faces",
    "metadata",
    "min_quality",
    "quality",
    "method",
    "patch",
    "stride",
    "steps",
)


@dataclass
class ImageRequest:
    images: list[bytes]  # the encoded images, in request order
    options: dict[str, Any] = field(default_factory=dict)  # the fields of OPTION_FIELDS present


async def read_image_request(request: Request, max_bytes: int, max_images: int) -> ImageRequest:
    """The images and options of a request, as multipart files (`images`, repeated) or JSON
    (`{"images": ["<base64>", ...]}`), with the options beside them in the same body."""
    with stage("read"):
        body = await _read_body(request, max_bytes)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        with stage("parse"):
            parsed = await _parse_multipart(request, body, max_bytes)
    elif media == "application/json":
        with stage("parse"):
            parsed = _parse_json(body)
    else:
        raise ServiceError(
            415, "unsupported_media_type", "send images as multipart/form-data files or application/json base64"
        )
    if not parsed.images:
        raise ServiceError(400, "bad_request", "no images: send at least one in the field 'images'")
    if len(parsed.images) > max_images:
        raise ServiceError(413, "too_many_images", f"{len(parsed.images)} images; at most {max_images} per request")
    return parsed


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused as soon as it is known to exceed `max_bytes` (declared or sent)."""
    too_large = ServiceError(413, "request_too_large", f"request body over {max_bytes} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


async def _parse_multipart(request: Request, body: bytes, max_bytes: int) -> ImageRequest:
    async def replay() -> dict[str, Any]:  # the parser reads the body we already hold
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_part_size=max_bytes)
    try:
        images = []
        for item in form.getlist("images"):
            if not isinstance(item, UploadFile):
                raise ServiceError(400, "bad_request", "the field 'images' takes files (curl: -F images=@face.jpg)")
            images.append(await item.read())
        options = {name: form[name] for name in OPTION_FIELDS if isinstance(form.get(name), str)}
        return ImageRequest(images, options)
    finally:
        await form.close()


def _parse_json(body: bytes) -> ImageRequest:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServiceError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ServiceError(400, "bad_request", 'the JSON body must be an object: {"images": ["<base64>", ...]}')
    images = document.get("images")
    if not isinstance(images, list) or not all(isinstance(item, str) for item in images):
        raise ServiceError(400, "bad_request", "'images' must be a list of base64 strings")
    options = {name: document[name] for name in OPTION_FIELDS if name in document}
    return ImageRequest([_from_base64(item, i) for i, item in enumerate(images)], options)


def _from_base64(text: str, index: int) -> bytes:
    """Plain base64 or a data URL (`data:image/jpeg;base64,...`)."""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceError(400, "invalid_base64", f"images[{index}] is not valid base64: {exc}") from exc


def decode_upload(data: bytes, index: int, max_pixels: int) -> np.ndarray:
    """An uploaded image as uint8 RGB, upright as its EXIF orientation says (phone photos)."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(index, max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise ServiceError(
            422, "not_an_image", f"images[{index}] is not an image ({', '.join(FORMATS)} accepted)"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:  # a known format whose header is damaged
        raise _corrupt(index, exc) from exc
    with image:
        if image.width * image.height > max_pixels:  # checked on the header, before decoding
            raise _too_many_pixels(index, max_pixels, image.size)
        try:
            image.load()
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise _corrupt(index, exc) from exc


def _too_many_pixels(index: int, max_pixels: int, size: tuple[int, int] | None = None) -> ServiceError:
    shown = f" ({size[0]}x{size[1]})" if size else ""
    return ServiceError(413, "image_too_large", f"images[{index}]{shown} has more than {max_pixels} pixels")


def _corrupt(index: int, exc: Exception) -> ServiceError:
    return ServiceError(422, "corrupt_image", f"images[{index}] is truncated or corrupt: {exc}")
