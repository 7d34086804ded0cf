"""Jobs waiting for the model resume as soon as it is ready again, not at the end of a backoff.

A worker that finds the model away (or its process dead) puts its job back with a growing backoff (workers.py) and
marks it as waiting for the model. This loop looks for such jobs; while there are any it asks
Triton whether the model is ready, and once it is makes them due at once. The mark is in the
store, so this works across replicas and over a gateway restart: any replica's watch wakes every
waiting job, and the backoff stays as the bound when no watch runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from gateway.config import Settings
from gateway.jobs.loops import Wake
from gateway.jobs.records import Job
from gateway.jobs.store import JobStore

logger = logging.getLogger("gateway.jobs")
WATCH_S = 1.0  # how often the waiting jobs (and, while there are any, the model) are looked at

ModelReady = Callable[[], Awaitable[bool]]


class ModelWatch:
    def __init__(self, settings: Settings, store: JobStore, model_ready: ModelReady, wake: Wake) -> None:
        self.settings = settings
        self.store = store
        self.model_ready = model_ready
        self.wake = wake
        self._ready = True  # what the last look found; until the first, assumed ready

    def last_seen_ready(self) -> bool:
        """Whether the model was ready at the last look (at most ``WATCH_S`` ago)."""
        return self._ready

    async def waiting(self, now: float) -> list[Job]:
        """The queued jobs whose backoff for the model has not ended yet."""
        waiting = []
        for job in await self.store.jobs_in("model_wait", math.inf, self.settings.max_queued_total):
            if not await self.store.drop_if_stale("model_wait", job.id, job) and job.run_after > now:
                waiting.append(job)
        return waiting

    async def resume_waiting(self) -> int:
        """Make every job waiting for the model due now, if the model is ready; how many were.

        The model is asked every round, jobs waiting or not: that keeps readiness and its metric
        current, and lets the Triton client see a reload of a model whose process died (not
        ready, then ready) even when no probe comes by in those seconds."""
        ready = self._ready = await self.model_ready()
        now = time.time()
        waiting = await self.waiting(now)
        if not waiting or not ready:
            return 0
        resumed = 0
        for job in waiting:
            _, changed = await self.store.mutate(job.id, lambda j: j.resume(now))
            resumed += changed
        if resumed:
            logger.info("the model is ready again: %d waiting jobs resume now", resumed)
            self.wake.set()
        return resumed

    async def loop(self) -> None:
        while True:
            await self.resume_waiting()
            await asyncio.sleep(WATCH_S)
