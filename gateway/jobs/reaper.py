"""The lease reaper: jobs whose worker stopped renewing its lease (a killed gateway) move on."""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from gateway.config import Settings
from gateway.jobs.loops import Wake
from gateway.jobs.records import ACTIVE, Job, JobStatus
from gateway.jobs.store import JobStore

logger = logging.getLogger("gateway.jobs")


class LeaseReaper:
    def __init__(self, settings: Settings, store: JobStore, wake: Wake) -> None:
        self.settings = settings
        self.store = store
        self.wake = wake
        self.interval_s = min(1.0, settings.job_lease_s / 3)

    def expire(self, job: Job, now: float) -> Job | None:
        """What a job with a lapsed lease becomes: cancelled if the caller asked, failed after too
        many lost workers, else queued again."""
        if job.status not in ACTIVE or (job.lease_until or 0) > now:
            return None
        if job.status is JobStatus.cancelling:
            return job.cancel("cancelled by the caller; its gateway stopped while stopping it", now)
        if job.attempts >= self.settings.job_max_attempts:
            return job.fail(500, f"its gateway stopped while running it {job.attempts} times; giving up", now)
        return job.requeue("queued again: its gateway stopped while running it", now=now)

    async def loop(self) -> None:
        while True:
            now = time.time()
            for job_id in await self.store.due("running", now):
                job, changed = await self.store.mutate(job_id, functools.partial(self.expire, now=now))
                if changed and job is not None:
                    logger.warning("job %s: lease of a stopped worker expired; now %s", job_id, job.status.value)
                    self.wake.set()
            await asyncio.sleep(self.interval_s)
