"""Dynamic batching: the crops of concurrent requests share one model call.

A request hands its crops to the batcher and awaits their embeddings. The batcher takes the
first waiting job, gathers the jobs that arrive within a small wait budget (or until the batch
is full), runs one model call in its own thread, and answers every job of the batch. While a
call runs, new jobs queue up and form the next batch, so under load batches grow by themselves.

Given the count of requests in flight (`in_flight`), the batcher waits only while another
request could still bring crops: a job whose request is the only one being served goes at once
instead of paying the wait budget for nobody (one client's requests, one at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from facerec.serve.http.tracking import note, stage

EmbedFn = Callable[[list[np.ndarray]], np.ndarray]  # crops -> one embedding row per crop
BatchObserver = Callable[[int, int], None]  # (crops, jobs) of each model call
InFlight = Callable[[], int]  # requests being served now, the asking one included


@dataclass
class _Job:
    crops: list[np.ndarray]
    result: asyncio.Future[np.ndarray]
    arrived: float  # event-loop time
    dispatched: float = 0.0  # event-loop time its model call started
    model_s: float = 0.0  # seconds of its model call


class Batcher:
    def __init__(
        self,
        embed: EmbedFn,
        max_batch: int,
        wait_s: float,
        observe: BatchObserver | None = None,
        in_flight: InFlight | None = None,  # None: always wait the budget for company
    ) -> None:
        self.embed_fn, self.max_batch, self.wait_s = embed, max_batch, wait_s
        self.observe = observe or (lambda crops, jobs: None)
        self.in_flight = in_flight
        self._pending: list[_Job] = []
        self._arrived: asyncio.Event | None = None  # set when a job is added
        self._task: asyncio.Task[None] | None = None
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="facerec-model")  # one call at a time

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start collecting, on the running event loop."""
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="facerec-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._pending:
            job.result.cancel()
        self._pending.clear()
        self._model_thread.shutdown(wait=True)

    async def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """The embeddings of `crops` (one row each), computed together with other requests'."""
        if not crops:
            return np.zeros((0, 0), dtype=np.float32)
        if self._arrived is None or not self.running:
            raise RuntimeError("the batcher is not running")
        loop = asyncio.get_running_loop()
        job = _Job(crops, loop.create_future(), loop.time())
        self._pending.append(job)
        self._arrived.set()
        with stage("embed"):
            rows = await job.result
        note("batch_wait", job.dispatched - job.arrived)
        note("model", job.model_s)
        return rows

    async def _serve(self) -> None:
        assert self._arrived is not None
        while True:
            await self._arrived.wait()
            await self._wait_for_company()
            batch = self._take_batch()
            if self._pending:  # left for the next batch
                self._arrived.set()
            else:
                self._arrived.clear()
            await self._run(batch)

    async def _wait_for_company(self) -> None:
        """Until the batch is full or the oldest job has waited its budget. Jobs that queued
        during the previous model call are past their budget already and go at once."""
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while self._pending and sum(len(job.crops) for job in self._pending) < self.max_batch:
            if not self._company_possible():
                return
            remaining = self._pending[0].arrived + self.wait_s - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):  # waiting on an event loses nothing
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _company_possible(self) -> bool:
        """Whether a request in flight has not queued its crops yet (it may join this batch).
        Any request counts, so at worst a job waits its budget as it would without the count."""
        return self.in_flight is None or self.in_flight() > len(self._pending)

    def _take_batch(self) -> list[_Job]:
        """The oldest jobs up to max_batch crops (always at least one job)."""
        batch, size = [], 0
        while self._pending and (not batch or size + len(self._pending[0].crops) <= self.max_batch):
            job = self._pending.pop(0)
            batch.append(job)
            size += len(job.crops)
        return batch

    async def _run(self, batch: list[_Job]) -> None:
        crops = [crop for job in batch for crop in job.crops]
        loop = asyncio.get_running_loop()
        started = loop.time()
        for job in batch:
            job.dispatched = started
        try:
            rows = await loop.run_in_executor(self._model_thread, self.embed_fn, crops)
        except Exception as exc:  # every waiting request gets the error; the batcher goes on
            for job in batch:
                if not job.result.done():
                    job.result.set_exception(exc)
            return
        self.observe(len(crops), len(batch))
        for job in batch:
            job.model_s = loop.time() - started
        start = 0
        for job in batch:
            if not job.result.done():  # a request that was cancelled meanwhile no longer waits
                job.result.set_result(rows[start : start + len(job.crops)])
            start += len(job.crops)
