"""The FastAPI application of the face service: `create_app(settings)`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.requests import Request

import facerec
from facerec.serve.http.auth import require
from facerec.serve.http.errors import error_response, install_error_handlers
from facerec.serve.http.faces import FaceService
from facerec.serve.http.metrics import CONTENT_TYPE, MetricsMiddleware
from facerec.serve.http.routes import router as face_router
from facerec.serve.http.schemas import ErrorResponse, Health, Ready
from facerec.serve.http.settings import ServiceSettings
from facerec.serve.http.state import ServiceState
from facerec.serve.keys import ADMIN, KeyStore

log = logging.getLogger("facerec.serve")

DESCRIPTION = """Face detection, embedding and verification with a facerec model.

Every endpoint but `/v1/health` and `/v1/ready` needs an API key (`facerec keys create`), sent as
`Authorization: Bearer <key>` or `X-API-Key: <key>`. Images travel as multipart files (`images`,
repeated) or as base64 strings in JSON (`{"images": [...]}`). Errors are
`{"error": {"code": ..., "message": ...}}`.
"""

# Liveness and readiness answer without a key: probes carry no secrets, and the answers reveal
# nothing but that the process is up and its model loaded.
ops_router = APIRouter()


@ops_router.get("/v1/health", response_model=Health)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@ops_router.get("/v1/ready", response_model=Ready, responses={503: {"model": ErrorResponse}})
async def ready(request: Request) -> Any:
    state: ServiceState = request.app.state.facerec
    if not state.ready:
        return error_response(503, "not_ready", "the service is starting or stopping")
    return {"ready": True, "model": state.service.describe()}


@ops_router.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(require(ADMIN))])
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format; needs the admin scope."""
    state: ServiceState = request.app.state.facerec
    return PlainTextResponse(state.metrics.render(state.ready), media_type=CONTENT_TYPE)


def create_app(settings: ServiceSettings, service: FaceService | None = None) -> FastAPI:
    """The service over `settings` (its model loaded now unless `service` is given); it answers
    requests once started (the batcher runs on the server's event loop)."""
    settings.check()
    state = ServiceState(settings, KeyStore(settings.data_dir), service or FaceService.load(settings))
    app = FastAPI(
        title="facerec",
        version=facerec.__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        default_response_class=JSONResponse,
    )
    app.state.facerec = state
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    app.include_router(ops_router)
    app.include_router(face_router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.facerec
    state.batcher.start()
    _log_start(state)
    try:
        yield
    finally:
        await state.batcher.stop()
        state.pool.shutdown(wait=False, cancel_futures=True)


def _log_start(state: ServiceState) -> None:
    settings, model = state.settings, state.service.describe()
    log.info("model %s (%s) with detector %s", model["name"], model["digest"][:12], model["detector"])
    if settings.insecure_no_auth:
        log.warning("--insecure-no-auth: every request is served without an API key (loopback only)")
    elif not state.keys.active_count():
        log.warning(
            "no API key in %s: every request will be refused; create one with "
            "`facerec keys create --scope detect,embed --data-dir %s`",
            state.keys.path,
            settings.data_dir,
        )
