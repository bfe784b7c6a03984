"""The face service over HTTP: FastAPI app (`create_app`), image intake, API-key checks, dynamic
batching of model calls, Prometheus metrics; `run_server` runs it with uvicorn (`facerec serve`)."""

from facerec.serve.http.app import create_app
from facerec.serve.http.server import run_server
from facerec.serve.http.settings import ServiceSettings, is_loopback

__all__ = ["ServiceSettings", "create_app", "is_loopback", "run_server"]
