"""What a running service holds: settings, keys, metrics, the face pipeline, the batcher, and
the gallery store with its audit log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np
from starlette.requests import Request

from facerec.align.types import Face
from facerec.serve.audit import AuditLog
from facerec.serve.http.batching import Batcher
from facerec.serve.http.errors import ServiceError
from facerec.serve.http.faces import FaceService, Sighting
from facerec.serve.http.images import decode_upload
from facerec.serve.http.metrics import Metrics
from facerec.serve.http.settings import ServiceSettings
from facerec.serve.http.tracking import RequestCount, in_context, stage
from facerec.serve.keys import KeyStore
from facerec.serve.store import GalleryStore

T = TypeVar("T")


@dataclass
class ServiceState:
    settings: ServiceSettings
    keys: KeyStore
    service: FaceService
    store: GalleryStore | None = None  # None: no store configured, galleries answer 503
    audit: AuditLog | None = None
    metrics: Metrics = field(default_factory=Metrics)
    requests: RequestCount = field(default_factory=RequestCount)  # in flight, for the batcher
    batcher: Batcher = field(init=False)
    pool: ThreadPoolExecutor = field(init=False)  # decoding and detection, off the event loop

    def __post_init__(self) -> None:
        embed = partial(self.service.embed_crops, max_batch=self.settings.max_batch)
        wait_s = self.settings.batch_wait_ms / 1000
        self.batcher = Batcher(embed, self.settings.max_batch, wait_s, self.metrics.observe_batch, self.requests)
        self.pool = ThreadPoolExecutor(self.settings.detect_threads, thread_name_prefix="facerec-detect")

    @property
    def ready(self) -> bool:
        return self.batcher.running

    def see(self, data: bytes, index: int) -> Sighting:
        """Decode one uploaded image and find every face in it (in a pool thread)."""
        with stage("decode"):
            image = decode_upload(data, index, self.settings.max_pixels)
        with stage("detect"):
            return Sighting(image, self.service.detect(image))

    async def see_all(self, images: list[bytes]) -> list[Sighting]:
        loop = asyncio.get_running_loop()
        with stage("see"):
            seen = (loop.run_in_executor(self.pool, in_context(self.see, d, i)) for i, d in enumerate(images))
            return list(await asyncio.gather(*seen))

    async def off_loop(self, work: Callable[..., T], *args: object) -> T:
        """`work(*args)` in the pool: store calls and audit appends block (SQLite, fsync), and the
        event loop must keep serving other requests meanwhile."""
        with stage("store"):
            return await asyncio.get_running_loop().run_in_executor(self.pool, partial(work, *args))

    async def crops(self, sighting: Sighting, faces: list[Face]) -> list[np.ndarray]:
        with stage("crop"):
            return await asyncio.get_running_loop().run_in_executor(self.pool, self.service.crops, sighting, faces)

    async def qualities(self, sighting: Sighting, faces: list[Face]) -> list[float]:
        """Each face's quality score, computed in the pool (it runs the model)."""
        with stage("quality"):
            return await asyncio.get_running_loop().run_in_executor(self.pool, self.service.qualities, sighting, faces)


def service_state(request: Request) -> ServiceState:
    """The running service's state; 503 while it cannot answer (starting, stopping)."""
    state: ServiceState = request.app.state.facerec
    if not state.ready:
        raise ServiceError(503, "not_ready", "the service is starting or stopping; retry shortly")
    return state
