"""The batcher's dispatch rule (a lone request goes at once; concurrent ones still share a model
call) and the per-request stage timing of `facerec serve --debug-timing`."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
from served import files, lfw, start_server

from conftest import needs_lfw, needs_mtcnn
from facerec.serve.http.batching import Batcher
from facerec.serve.http.tracking import RequestCount, RequestTimer, _timer, note, server_timing, stage

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

NEVER_S = 3600.0  # a wait budget no test could sit out: waiting it would time the test out


def run(scenario) -> tuple[list, list[tuple[int, int]]]:
    """(main(wait_s, in_flight): `scenario(batcher)` on a batcher over np.stack, the model calls)."""
    calls: list[tuple[int, int]] = []

    async def main(wait_s: float, in_flight: int) -> list:
        count = RequestCount()
        count.value = in_flight
        batcher = Batcher(np.stack, 8, wait_s, lambda n, k: calls.append((n, k)), count)
        batcher.start()
        try:
            return await asyncio.wait_for(scenario(batcher), timeout=60)
        finally:
            await batcher.stop()

    return main, calls


def test_a_lone_request_does_not_wait_for_company():
    async def scenario(batcher):
        return [await batcher.embed([np.full(3, float(i))]) for i in range(3)]

    main, calls = run(scenario)
    results = asyncio.run(main(NEVER_S, 1))  # only the asking request is in flight
    for i, rows in enumerate(results):
        np.testing.assert_array_equal(rows, [[i, i, i]])
    assert calls == [(1, 1)] * 3


def test_a_request_in_flight_is_waited_for_and_shares_the_call():
    async def scenario(batcher):
        first = asyncio.ensure_future(batcher.embed([np.zeros(2)]))
        await asyncio.sleep(0.05)  # the second request is still decoding meanwhile
        second = await batcher.embed([np.ones(2), np.ones(2)])
        return [await first, second]

    main, calls = run(scenario)
    first, second = asyncio.run(main(NEVER_S, 2))
    np.testing.assert_array_equal(first, [[0, 0]])
    np.testing.assert_array_equal(second, [[1, 1], [1, 1]])
    assert calls == [(3, 2)]


def test_company_that_never_comes_costs_the_wait_budget_only():
    async def scenario(batcher):
        return await batcher.embed([np.ones(2)])

    main, calls = run(scenario)
    np.testing.assert_array_equal(asyncio.run(main(0.05, 2)), [[1, 1]])  # 2 in flight, one job
    assert calls == [(1, 1)]


def test_stages_sum_nested_blocks_and_other_is_what_no_top_level_stage_covers():
    timer = RequestTimer()
    token = _timer.set(timer)
    try:
        with stage("see"):
            with stage("decode"):
                pass
            with stage("decode"):
                pass
        with stage("store"):
            pass
        note("model", 0.25)
    finally:
        _timer.reset(token)
    summary = timer.summary()
    assert timer.top_level == {"see", "store"}
    assert summary["model"] == 250.0
    top = timer.seconds["see"] + timer.seconds["store"]
    assert summary["other"] == pytest.approx(summary["total"] - top * 1e3, abs=0.02)
    assert summary["see"] >= summary["decode"]
    assert server_timing({"a": 1.0, "total": 2.5}) == "a;dur=1.00, total;dur=2.50"
    with stage("outside a request"):  # no timer: nothing recorded, nothing raised
        pass


@needs_lfw
@needs_mtcnn
def test_debug_timing_answers_each_stage_in_a_server_timing_header(tmp_path):
    server = start_server(tmp_path / "data", "--insecure-no-auth", "--debug-timing", "--model", "fast")
    try:
        pair = files(lfw("George_W_Bush", 1).read_bytes(), lfw("George_W_Bush", 2).read_bytes())
        response = httpx.post(f"{server.url}/v1/verify", files=pair, timeout=60)
        plain = httpx.get(f"{server.url}/v1/health", timeout=10)
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    stages = dict(re.findall(r"([a-z_]+);dur=([0-9.]+)", response.headers["server-timing"]))
    for name in ("read", "parse", "see", "decode", "detect", "crop", "embed", "batch_wait", "model", "total"):
        assert name in stages, f"{name} missing from {response.headers['server-timing']}"
    ms = {name: float(value) for name, value in stages.items()}
    assert ms["embed"] >= ms["model"] and ms["see"] <= ms["total"]
    assert "other" in plain.headers["server-timing"]
    assert "POST /v1/verify" in server.log.read_text()
