"""Service metrics in the Prometheus text format (0.0.4), written by hand: request counts by
endpoint and status, request latency, and the sizes of the model calls that batching makes."""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
UNMATCHED = "unmatched"  # requests to no route share one label, so stray paths cannot grow the metrics


class Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one: above every bucket
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, name: str, labels: dict[str, str]) -> list[str]:
        out, cumulative = [], 0
        for bound, count in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            cumulative += count
            le = bound if isinstance(bound, str) else _number(bound)
            out.append(f"{name}_bucket{_labels({**labels, 'le': le})} {cumulative}")
        out.append(f"{name}_sum{_labels(labels)} {_number(self.sum)}")
        out.append(f"{name}_count{_labels(labels)} {cumulative}")
        return out


class Metrics:
    """Counters and histograms of one server process; safe to update from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.latency: dict[str, Histogram] = {}
        self.batch_crops = Histogram(BATCH_BUCKETS)
        self.batch_requests = Histogram(BATCH_BUCKETS)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, method, status)] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, crops: int, requests: int) -> None:
        with self._lock:
            self.batch_crops.observe(crops)
            self.batch_requests.observe(requests)

    def render(self, ready: bool) -> str:
        with self._lock:
            lines = [
                *_header("facerec_requests_total", "counter", "HTTP requests by endpoint, method and status."),
                *(
                    f"facerec_requests_total{_labels({'endpoint': e, 'method': m, 'status': str(s)})} {n}"
                    for (e, m, s), n in sorted(self.requests.items())
                ),
                *_header("facerec_request_duration_seconds", "histogram", "Time to answer a request."),
                *(
                    line
                    for endpoint, hist in sorted(self.latency.items())
                    for line in hist.lines("facerec_request_duration_seconds", {"endpoint": endpoint})
                ),
                *_header("facerec_batch_size", "histogram", "Face crops in one model call."),
                *self.batch_crops.lines("facerec_batch_size", {}),
                *_header("facerec_batch_requests", "histogram", "Requests that shared one model call."),
                *self.batch_requests.lines("facerec_batch_requests", {}),
                *_header("facerec_ready", "gauge", "1 when the model is loaded and requests are served."),
                f"facerec_ready {int(ready)}",
            ]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Counts every HTTP request by the route it matched (its path template) and its status;
    a request that fails with an exception counts as a 500."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            endpoint = _route_path(scope)
            self.metrics.observe_request(endpoint, scope["method"], status, time.perf_counter() - started)


def _route_path(scope: dict[str, Any]) -> str:
    route = scope.get("route")  # set by the router on the scope it was handed
    return getattr(route, "path", UNMATCHED) if route is not None else UNMATCHED


def _header(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value))
