"""Run the face service: `facerec serve`."""

from __future__ import annotations

import argparse
from pathlib import Path

from facerec.cli.pipeline_options import MODEL_HELP, add_runtime_argument
from facerec.cli.registry import command
from facerec.errors import FacerecError
from facerec.serve.keys import DEFAULT_DATA_DIR
from facerec.serve.store import KEY_ENV


def run_serve(args: argparse.Namespace) -> int:
    try:
        from facerec.serve.http import ServiceSettings, run_server
    except ModuleNotFoundError as exc:
        raise FacerecError(f"`facerec serve` needs {exc.name}: pip install 'facerec[serve]'") from exc
    options = {name: getattr(args, name) for name in SETTINGS}
    key_file = None if args.store_key_file is None else Path(args.store_key_file)
    run_server(ServiceSettings(data_dir=Path(args.data_dir), store_key_file=key_file, **options))
    return 0


SETTINGS = ("host", "port", "model", "detector", "device", "runtime", "insecure_no_auth", "max_images", "max_pixels")
SETTINGS += ("max_batch", "batch_wait_ms", "detect_threads", "max_request_bytes", "store_plaintext", "store")
SETTINGS += ("debug_timing",)
SETTINGS += ("quality",)


@command("serve", "run the face service over HTTP (detect, embed, verify, galleries; API docs at /docs)", run_serve)
def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="where keys.db (and galleries) live")
    p.add_argument("--model", default="default", help=MODEL_HELP)
    p.add_argument("--detector", default="mtcnn", help="mtcnn or dlib")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    add_runtime_argument(p)
    p.add_argument("--insecure-no-auth", action="store_true", help="serve without API keys (loopback only)")
    p.add_argument("--max-images", type=int, default=16, help="images per request")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="pixels per image")
    p.add_argument("--max-request-bytes", type=int, default=20 * 2**20, help="request body size")
    p.add_argument("--max-batch", type=int, default=32, help="face crops per model call")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a crop waits for others to batch with")
    p.add_argument("--detect-threads", type=int, default=2, help="images decoded and searched for faces at once")
    p.add_argument(
        "--debug-timing", action="store_true", help="time each request's stages (Server-Timing header, log line)"
    )
    p.add_argument("--quality", default="stability", help="face quality scorer: stability, feature_norm or detector")
    _store_args(p)


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", default=None, help="gallery store file (default: <data-dir>/gallery.db) or postgresql:// URL"
    )
    p.add_argument("--store-key-file", default=None, help=f"key of the gallery store (default: ${KEY_ENV})")
    p.add_argument(
        "--store-plaintext", action="store_true", help="a gallery store without encryption (tests, development)"
    )
