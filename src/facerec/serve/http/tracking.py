"""Requests in flight, and where a request's time goes.

`RequestTracker` (ASGI middleware) counts the HTTP requests being served: the batcher waits for
company only while some other request could still bring crops. With `--debug-timing` it also
times each request's stages (`stage("decode")`, ...) and answers them in a `Server-Timing`
header and a log line, so the HTTP layer's cost can be broken down in a real server. Stages
nest freely: each is the wall time of its own block, summed over a request's blocks of that
name; "total" is the whole request and "other" what no stage covers at the top level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from functools import partial
from typing import TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("facerec.serve.timing")
T = TypeVar("T")


class RequestTimer:
    """The stages of one request: name -> seconds, and which of them ran at the top level."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.top_level: set[str] = set()
        self.depth = 0

    def add(self, name: str, seconds: float, top_level: bool) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        if top_level:
            self.top_level.add(name)

    def summary(self) -> dict[str, float]:
        """Milliseconds per stage, with total and other (total minus the top-level stages)."""
        total = time.perf_counter() - self.started
        covered = sum(self.seconds[name] for name in self.top_level)
        found = {**self.seconds, "other": max(0.0, total - covered), "total": total}
        return {name: round(seconds * 1e3, 2) for name, seconds in found.items()}


_timer: ContextVar[RequestTimer | None] = ContextVar("facerec_request_timer", default=None)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as stage `name` of the current request (nothing when timing is off)."""
    timer = _timer.get()
    if timer is None:
        yield
        return
    top_level, started = timer.depth == 0, time.perf_counter()
    timer.depth += 1
    try:
        yield
    finally:
        timer.depth -= 1
        timer.add(name, time.perf_counter() - started, top_level)


def note(name: str, seconds: float) -> None:
    """Add `seconds` measured elsewhere (e.g. in the batcher's task) to a nested stage `name`."""
    timer = _timer.get()
    if timer is not None:
        timer.add(name, seconds, top_level=False)


def in_context(work: Callable[..., T], *args: object) -> Callable[[], T]:
    """`work(*args)` to run in another thread inside the current request's context, so that its
    stages are timed too (an executor does not carry context variables over by itself)."""
    return partial(copy_context().run, work, *args)


def server_timing(summary: dict[str, float]) -> str:
    """The `Server-Timing` header value (W3C): `name;dur=ms` per stage."""
    return ", ".join(f"{name};dur={ms:.2f}" for name, ms in summary.items())


class RequestCount:
    """HTTP requests being served now; only the event loop's thread changes it."""

    def __init__(self) -> None:
        self.value = 0

    def __call__(self) -> int:
        return self.value


class RequestTracker:
    """Counts HTTP requests in flight into `count`; times their stages when `timing` is on."""

    def __init__(self, app: ASGIApp, count: RequestCount, timing: bool = False) -> None:
        self.app, self.count, self.timing = app, count, timing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.count.value += 1
        try:
            if self.timing:
                await self._timed(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            self.count.value -= 1

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        timer = RequestTimer()
        token = _timer.set(timer)

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":  # the body is written: what is left is I/O
                summary = timer.summary()
                headers = [*message.get("headers", []), (b"server-timing", server_timing(summary).encode())]
                message = {**message, "headers": headers}
                log.info("%s %s %s", scope["method"], scope["path"], " ".join(f"{k}={v}" for k, v in summary.items()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            _timer.reset(token)
