"""Starts and stops the job layer's background loops: ``job_workers`` workers, the lease reaper,
the model watch, webhook deliveries and retention. Each loop is its own module; this one only wires them."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from gateway.config import Settings
from gateway.generation.service import GenerationService
from gateway.jobs.deliveries import WebhookDeliveries
from gateway.jobs.loops import Wake, run_forever
from gateway.jobs.model_watch import ModelWatch
from gateway.jobs.reaper import LeaseReaper
from gateway.jobs.retention import Retention
from gateway.jobs.store import JobStore
from gateway.jobs.views import JobViews
from gateway.jobs.workers import JobWorker


class JobRunner:
    def __init__(self, settings: Settings, store: JobStore, generation: GenerationService, views: JobViews,
                 wake: Wake) -> None:
        worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.model_watch = ModelWatch(settings, store, self._model_ready(generation), wake)
        self.workers = [JobWorker(settings, store, generation, worker_id, wake, self.model_watch.last_seen_ready)
                        for _ in range(settings.job_workers)]
        self.reaper = LeaseReaper(settings, store, wake)
        self.deliveries = WebhookDeliveries(settings, store, views, wake)
        self.retention = Retention(settings, store, generation.outputs.directory, generation.cache)
        self._tasks: list[asyncio.Task] = []

    @staticmethod
    def _model_ready(generation: GenerationService) -> Callable[[], Awaitable[bool]]:
        async def ready() -> bool:
            return (await generation.triton.readiness())[0]
        return ready

    def start(self) -> None:
        loops = [("worker", worker.loop) for worker in self.workers]
        loops += [("reaper", self.reaper.loop), ("model-watch", self.model_watch.loop),
                  ("webhooks", self.deliveries.loop),
                  ("retention", self.retention.loop)]
        self._tasks = [asyncio.create_task(run_forever(name, loop)) for name, loop in loops]

    async def stop(self) -> None:
        """Cancel the loops; a worker hands its running job back to the queue as it stops."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.deliveries.close()
