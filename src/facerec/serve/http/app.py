"""The FastAPI application of the face service: `create_app(settings)`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.requests import Request

import facerec
from facerec.serve.audit import AUDIT_FILE, AuditLog
from facerec.serve.http.auth import require
from facerec.serve.http.errors import error_response, install_error_handlers
from facerec.serve.http.explain import router as explain_router
from facerec.serve.http.faces import FaceService
from facerec.serve.http.galleries import router as gallery_router
from facerec.serve.http.metrics import CONTENT_TYPE, MetricsMiddleware
from facerec.serve.http.routes import router as face_router
from facerec.serve.http.schemas import ErrorResponse, Health, Ready
from facerec.serve.http.settings import ServiceSettings
from facerec.serve.http.state import ServiceState
from facerec.serve.http.tracking import RequestTracker
from facerec.serve.keys import ADMIN, KeyStore
from facerec.serve.store import GalleryStore, StoreKeyError, open_store

log = logging.getLogger("facerec.serve")

DESCRIPTION = """Face detection, embedding, verification and gallery search with a facerec model.

Every endpoint but `/v1/health` and `/v1/ready` needs an API key (`facerec keys create`), sent as
`Authorization: Bearer <key>` or `X-API-Key: <key>`. Images travel as multipart files (`images`,
repeated) or as base64 strings in JSON (`{"images": [...]}`). Errors are
`{"error": {"code": ..., "message": ...}}`. No answer contains a gallery's vectors.
"""

# Liveness and readiness answer without a key: probes carry no secrets, and the answers reveal
# nothing but that the process is up and its model loaded.
ops_router = APIRouter()
# One self-contained file (inline script and style, nothing fetched from elsewhere), read once.
WEB_PAGE = resources.files("facerec.serve.http").joinpath("static/index.html").read_text(encoding="utf-8")


@ops_router.get("/v1/health", response_model=Health)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@ops_router.get("/v1/ready", response_model=Ready, responses={503: {"model": ErrorResponse}})
async def ready(request: Request) -> Any:
    state: ServiceState = request.app.state.facerec
    if not state.ready:
        return error_response(503, "not_ready", "the service is starting or stopping")
    return {"ready": True, "model": state.service.describe()}


@ops_router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def web_page() -> HTMLResponse:
    """The web page (enroll, verify, search): static, so no key is needed to load it; its calls
    to the API send the key typed into it."""
    return HTMLResponse(WEB_PAGE)


@ops_router.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(require(ADMIN))])
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format; needs the admin scope."""
    state: ServiceState = request.app.state.facerec
    return PlainTextResponse(state.metrics.render(state.ready), media_type=CONTENT_TYPE)


def create_app(settings: ServiceSettings, service: FaceService | None = None) -> FastAPI:
    """The service over `settings` (its model loaded now unless `service` is given); it answers
    requests once started (the batcher runs on the server's event loop)."""
    settings.check()
    keys = KeyStore(settings.data_dir)
    store = open_gallery_store(settings)  # a bad store key fails here, before the model loads
    try:
        state = ServiceState(settings, keys, service or FaceService.load(settings), store)
    except BaseException:
        if store is not None:
            store.close()
        raise
    if store is not None:
        state.audit = AuditLog(settings.data_dir / AUDIT_FILE)
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
    app.add_middleware(RequestTracker, count=state.requests, timing=settings.debug_timing)
    app.include_router(ops_router)
    app.include_router(face_router)
    app.include_router(gallery_router)
    app.include_router(explain_router)
    return app


def open_gallery_store(settings: ServiceSettings) -> GalleryStore | None:
    """The gallery store, its indexes built (searches need no build on the first request);
    None when none is configured. A key that is missing or does not open it stops the start."""
    if not settings.store_configured():
        return None
    try:
        store = open_store(settings.store_location, settings.store_key_file, settings.store_plaintext)
    except StoreKeyError as exc:
        raise StoreKeyError(
            f"cannot open the gallery store {settings.store_location}: {exc} "
            "(give its key with --store-key-file or $FACEREC_STORE_KEY, or --store-plaintext for an unencrypted one)"
        ) from exc
    warm = getattr(store, "warm", None)
    if callable(warm):
        warm()
    return store


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.facerec
    state.batcher.start()
    _log_start(state)
    try:
        yield
    finally:
        await state.batcher.stop()
        state.pool.shutdown(wait=True, cancel_futures=True)  # no store call may outlive the store
        if state.store is not None:
            state.store.close()


def _log_start(state: ServiceState) -> None:
    settings, model = state.settings, state.service.describe()
    log.info("model %s (%s) with detector %s", model["name"], model["digest"][:12], model["detector"])
    if state.store is None:
        log.warning("no gallery store (--store-key-file, $FACEREC_STORE_KEY, --store-plaintext): galleries answer 503")
    else:
        log.info("gallery store %s, audit log %s", state.store.location, state.audit and state.audit.path)
    if settings.insecure_no_auth:
        log.warning("--insecure-no-auth: every request is served without an API key (loopback only)")
    elif not state.keys.active_count():
        log.warning(
            "no API key in %s: every request will be refused; create one with "
            "`facerec keys create --scope detect,embed --data-dir %s`",
            state.keys.path,
            settings.data_dir,
        )
