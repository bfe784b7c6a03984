"""Run the service: check the settings, load the model, then serve with uvicorn."""

from __future__ import annotations

import logging

from facerec.serve.http.app import create_app
from facerec.serve.http.settings import ServiceSettings

log = logging.getLogger("facerec.serve")


def run_server(settings: ServiceSettings) -> None:
    """Serve until interrupted. Settings are checked before the model is loaded, so a refused
    address fails at once."""
    import uvicorn

    settings.check()
    app = create_app(settings)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    log.info("serving on http://%s:%d (API docs at /docs)", host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, server_header=False, timeout_graceful_shutdown=10)
