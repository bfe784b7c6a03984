"""Who may call what: the API key of a request (`Authorization: Bearer <key>` or `X-API-Key`),
checked against the key store and the scope an endpoint needs."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

from facerec.serve.http.errors import ServiceError
from facerec.serve.http.state import ServiceState
from facerec.serve.http.tracking import stage
from facerec.serve.keys import UNRESTRICTED, ApiKey, InvalidKey

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def authenticate(request: Request) -> ApiKey:
    """The request's key; 401 when there is none or it is unknown or revoked."""
    state: ServiceState = request.app.state.facerec
    if state.settings.insecure_no_auth:
        return UNRESTRICTED
    token = presented_key(request)
    if token is None:
        raise ServiceError(
            401, "unauthorized", "an API key is required: Authorization: Bearer <key> or X-API-Key", CHALLENGE
        )
    try:
        with stage("auth"):
            return state.keys.authenticate(token)
    except InvalidKey as exc:
        raise ServiceError(401, "unauthorized", str(exc), CHALLENGE) from exc


def require(*scopes: str) -> Callable[[Request], ApiKey]:
    """A FastAPI dependency: the request's key, 403 unless it holds every scope in `scopes`."""

    def dependency(request: Request) -> ApiKey:
        key = authenticate(request)
        missing = [scope for scope in scopes if not key.allows(scope)]
        if missing:
            raise ServiceError(403, "forbidden", f"this API key lacks the scope(s) {', '.join(missing)}")
        return key

    return dependency


def require_gallery(key: ApiKey, gallery: str) -> None:
    """403 unless `key` was granted `gallery` (for the endpoints that act on a gallery)."""
    if not key.allows_gallery(gallery):
        raise ServiceError(403, "forbidden", f"this API key is not granted the gallery '{gallery}'")
