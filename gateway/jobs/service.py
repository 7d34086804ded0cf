"""What the job routes call: submit (with idempotency and queue limits), read, list, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import ValidationError

from gateway.config import Settings
from gateway.errors import (
    ApiError,
    ConflictError,
    InvalidFieldError,
    NotFoundError,
    QueueFullError,
    RateLimitedError,
    describe_validation,
)
from gateway.generation.service import GenerationService
from gateway.jobs.loops import Wake
from gateway.jobs.records import IdempotencyConflictError, Job, JobEvent, JobStatus, Webhook
from gateway.jobs.store import IdempotencyKey, JobStore
from gateway.jobs.webhooks import check_callback_url
from gateway.logs import prompt_for_log
from gateway.schemas import BatchRequest, JobRequest, VideoParams

logger = logging.getLogger("gateway.jobs")
# How often an event stream looks for new events in the store. The store is the channel, so a
# stream held on one replica sees what a worker on another one recorded.
EVENT_POLL_S = 0.25
FINAL_TYPES = frozenset(status.value for status in JobStatus if status.final)


@dataclass(frozen=True)
class BatchItemOutcome:
    """One item of a batch: its job, or the error that kept it out."""

    index: int
    job: Job | None = None
    error: ApiError | None = None


class JobService:
    def __init__(self, settings: Settings, store: JobStore, generation: GenerationService,
                 wake: Wake | None = None) -> None:
        self.settings = settings
        self.store = store
        self.generation = generation
        self.wake = wake  # set on submit so a local worker starts at once

    async def store_readiness(self) -> str | None:
        """Why the job store is not usable, or None when it answers (``/readyz``)."""
        try:
            await self.store.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready, with its reason
            return f"the job store is not reachable: {type(exc).__name__}"
        return None

    async def submit(self, body: JobRequest, owner: str, base_url: str,
                     idempotency_key: str | None = None) -> tuple[Job, bool]:
        """Validate everything a worker would trip on, then store the job; (job, created)."""
        webhook = None
        if body.callback_url:
            if self.settings.webhook_secret is None:
                raise InvalidFieldError("callback_url needs webhooks to be configured (I2V_WEBHOOK_SECRET)")
            url = await check_callback_url(body.callback_url, self.settings.webhook_allow_private)
            webhook = Webhook(url=url)
        prepared = await self.generation.prepare(body)
        idempotency = None
        if idempotency_key:
            if len(idempotency_key) > 255:
                raise InvalidFieldError("Idempotency-Key is longer than 255 characters")
            body_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
            idempotency = IdempotencyKey(owner, idempotency_key, body_hash)
        else:
            await self._check_queue(owner)
        now = time.time()
        params = VideoParams.model_validate(body.model_dump(include=set(VideoParams.model_fields)))
        job = Job(owner=owner, params=params, width=prepared.width, height=prepared.height, base_url=base_url,
                  webhook=webhook, created_at=now, updated_at=now, run_after=now,
                  deadline_at=now + self.settings.job_deadline_s)
        try:
            stored, created = await self.store.insert(job, prepared.image, idempotency, self.settings.retention_s)
        except IdempotencyConflictError as exc:
            raise ConflictError(f"Idempotency-Key was used for job {exc} with a different body; "
                                "use a new key for a new request") from None
        if created and idempotency is not None:
            # Checked after the key so a retried submission is answered even with a full queue.
            try:
                await self._check_queue(owner, excluding=1)
            except ApiError:
                await self.store.delete(stored.id)
                raise
        if created:
            logger.info("job %s queued for key %s, prompt %s", stored.id, owner,
                        prompt_for_log(body.prompt, self.settings.log_prompts))
            if self.wake is not None:
                self.wake.set()
        return stored, created

    async def _check_queue(self, owner: str, excluding: int = 0) -> None:
        if await self.store.count_queued(owner) - excluding >= self.settings.max_queued_per_key:
            raise RateLimitedError(f"key '{owner}' already has {self.settings.max_queued_per_key} queued jobs; "
                                   "wait for some to start", {"Retry-After": "10"})
        if await self.store.count_queued() - excluding >= self.settings.max_queued_total:
            raise QueueFullError("the job queue is full; retry later")

    async def submit_batch(self, batch: BatchRequest, owner: str, base_url: str) -> list[BatchItemOutcome]:
        """Each item is its own job; a bad item is reported alone and the others still run."""
        if len(batch.items) > self.settings.max_batch_items:
            raise InvalidFieldError(f"a batch holds at most {self.settings.max_batch_items} items, "
                                    f"not {len(batch.items)}")
        results: list[BatchItemOutcome] = []
        for index, item in enumerate(batch.items):
            fields = {**batch.defaults, **item}
            if batch.callback_url and "callback_url" not in item:
                fields["callback_url"] = batch.callback_url
            try:
                body = JobRequest.model_validate(fields)
                job, _ = await self.submit(body, owner, base_url)
            except ValidationError as exc:
                results.append(BatchItemOutcome(index, error=InvalidFieldError(describe_validation(exc.errors()))))
            except ApiError as exc:
                results.append(BatchItemOutcome(index, error=exc))
            else:
                results.append(BatchItemOutcome(index, job=job))
        return results

    async def get(self, job_id: str, owner: str) -> Job:
        job = await self.store.get(job_id)
        # Another caller's job is as unknown as a missing one.
        if job is None or job.owner != owner:
            raise NotFoundError(f"no job {job_id}")
        return job

    async def list(self, owner: str, offset: int, limit: int) -> tuple[list[Job], int | None]:
        jobs = await self.store.list_for_owner(owner, offset, limit + 1)
        return jobs[:limit], (offset + limit if len(jobs) > limit else None)

    async def cancel(self, job_id: str, owner: str) -> Job:
        """A queued job is cancelled at once and never runs; a running one is asked to stop,
        and its worker cancels the Triton request within a heartbeat."""
        await self.get(job_id, owner)

        def change(job: Job) -> Job | None:
            if job.status is JobStatus.queued:
                return job.cancel("cancelled before it started")
            if job.status is JobStatus.running:
                return job.request_cancel()
            return None  # already stopping or ended: cancelling again changes nothing

        job, _ = await self.store.mutate(job_id, change)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        return job

    async def wait(self, job: Job, seconds: float) -> Job:
        """The job once it has ended, or as it is after ``seconds``."""
        async def ended() -> None:
            async for _ in self.events(job.id, job.events):
                pass
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ended(), seconds)
        return await self.get(job.id, job.owner)

    async def events(self, job_id: str, after: int = 0) -> AsyncIterator[JobEvent]:
        """The job's events with an id above ``after``, as they are recorded, up to its final one.
        Ends at once when the job has already ended at or before ``after`` (a resume after the
        final event, a wait on an ended job): no later event could ever end it."""
        checked_end = False
        while True:
            events = await self.store.events_after(job_id, after)
            if not events and not checked_end:
                job = await self.store.get(job_id)
                if job is None or job.status.final:
                    return
                checked_end = True
            for event in events:
                yield event
                after = event.id
                if event.type in FINAL_TYPES:
                    return
            await asyncio.sleep(EVENT_POLL_S)
