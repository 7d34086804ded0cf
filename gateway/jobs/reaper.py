"""The reaper: jobs whose worker stopped renewing its lease (a killed gateway) move on, and queued
jobs whose caller's Cancel-After passed are cancelled without waiting for a free worker."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time

from gateway.config import Settings
from gateway.jobs.loops import Wake
from gateway.jobs.records import ACTIVE, Job, JobStatus
from gateway.jobs.store import JobStore

logger = logging.getLogger("gateway.jobs")
NEWER_INDEXES = ("deadline", "model_wait")  # indexes a gateway of an earlier version did not keep


class LeaseReaper:
    def __init__(self, settings: Settings, store: JobStore, wake: Wake) -> None:
        self.settings = settings
        self.store = store
        self.wake = wake
        self.interval_s = min(1.0, settings.job_lease_s / 3)
        self._indexed_earlier_jobs = False

    def expire(self, job: Job, now: float) -> Job | None:
        """What a job with a lapsed lease becomes: cancelled if the caller asked, failed after too
        many lost workers, else queued again."""
        if job.status not in ACTIVE or (job.lease_until or 0) > now:
            return None
        if job.status is JobStatus.cancelling:
            return job.cancel("cancelled by the caller; its gateway stopped while stopping it", now)
        lost = job.lost_workers + 1
        if lost >= self.settings.job_max_attempts:
            return job.model_copy(update={"lost_workers": lost}).fail(
                500, f"its gateway stopped while running it {lost} times; giving up", now)
        return job.requeue("queued again: its gateway stopped while running it", lost_worker=True, now=now)

    async def index_earlier_jobs(self) -> None:
        """Queued jobs written by a gateway of an earlier version, which kept no deadline or
        model-wait index, join those indexes (a few reads and writes at start)."""
        for job in await self.store.jobs_in("queued", math.inf, self.settings.max_queued_total):
            for index in NEWER_INDEXES:
                score = job.index_scores()[index]
                if score is not None:
                    await self.store.set_index(index, job.id, score)

    @staticmethod
    def cancel_overdue(job: Job, now: float) -> Job | None:
        return job.cancel(job.deadline_message(), now) if job.status is JobStatus.queued \
            and job.past_cancel_at(now) else None

    async def loop(self) -> None:
        # No worker can renew a lease while the store is away, so a lease that lapsed then proves
        # nothing: only one that lapsed with the store answering for a whole lease period does.
        # A store error restarts this loop (loops.run_forever), and with it that period; the
        # worker hands its job back itself meanwhile, without counting a lost worker.
        answering_since = time.time()
        if not self._indexed_earlier_jobs:
            await self.index_earlier_jobs()
            self._indexed_earlier_jobs = True
        while True:
            now = time.time()
            reap = now - answering_since >= self.settings.job_lease_s
            for job_id in await self.store.due("running", now) if reap else []:
                job, changed = await self.store.mutate(job_id, functools.partial(self.expire, now=now))
                if changed and job is not None:
                    logger.warning("job %s: lease of a stopped worker expired; now %s", job_id, job.status.value)
                    self.wake.set()
            await self.cancel_overdue_jobs(now)
            await asyncio.sleep(self.interval_s)

    async def cancel_overdue_jobs(self, now: float) -> None:
        """Cancel the queued jobs past their caller's deadline."""
        for job_id in await self.store.due("deadline", now):
            job, changed = await self.store.mutate(job_id, functools.partial(self.cancel_overdue, now=now))
            if changed:
                self.wake.set()  # its webhook is due
            else:  # a stale entry would hold a place in every look
                await self.store.drop_if_stale("deadline", job_id, job)
