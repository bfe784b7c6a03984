"""Every failure of the service as one JSON shape, `{"error": {"code": ..., "message": ...}}`.

Handlers map the library's exceptions and the framework's to a 4xx with a code a client can
branch on; anything unexpected is logged here and answered with a bare 500, never a traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from facerec.align.pipeline import NoFaceError
from facerec.errors import FacerecError
from facerec.serve.store import AlreadyExists, ModelMismatch, UnknownFace, UnknownGallery, UnknownSubject

log = logging.getLogger("facerec.serve")


class ServiceError(Exception):
    """A request the service refuses: HTTP status, a stable code, a message for the client."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _code_of(status: int) -> str:
    """'not_found' for 404: the framework's own errors carry no code of ours."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, _code_of(exc.status_code), str(exc.detail), exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return error_response(422, "invalid_request", problems or "invalid request")


async def _no_face(_: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "no_face", str(exc))


async def _facerec_error(_: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "invalid_request", str(exc))


# The store's refusals, as (status, code): more specific than FacerecError, so matched first.
STORE_ERRORS: dict[type[Exception], tuple[int, str]] = {
    UnknownGallery: (404, "unknown_gallery"),
    UnknownSubject: (404, "unknown_subject"),
    UnknownFace: (404, "unknown_face"),
    AlreadyExists: (409, "already_exists"),
    ModelMismatch: (422, "wrong_model"),
}


async def _store_error(_: Request, exc: Exception) -> JSONResponse:
    status, code = next(answer for kind, answer in STORE_ERRORS.items() if isinstance(exc, kind))
    return error_response(status, code, str(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(NoFaceError, _no_face)
    app.add_exception_handler(FacerecError, _facerec_error)
    for kind in STORE_ERRORS:
        app.add_exception_handler(kind, _store_error)
    app.add_exception_handler(Exception, _unexpected)
