"""What the job routes call: submit (with idempotency and queue limits), read, list, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
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
from gateway.jobs.queue import RUNNING_WINDOW, Place, QueueSnapshot
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
PLACE_POLL_S = 1.0  # how often a waiting job's stream looks at its place in the queue
ETA_MOVE_S = 5.0


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
        self._seconds_per_step: float | None = None
        self._last_snapshot: tuple[float, QueueSnapshot] | None = None  # (monotonic time, snapshot)

    async def store_readiness(self) -> str | None:
        """Why the job store is not usable, or None when it answers (``/readyz``)."""
        try:
            await self.store.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready, with its reason
            return f"the job store is not reachable: {type(exc).__name__}"
        return None

    async def submit(self, body: JobRequest, owner: str, base_url: str, idempotency_key: str | None = None,
                     cancel_after_s: float | None = None, *, keep_input: bool = False,
                     remixed_from: str | None = None) -> tuple[Job, bool]:
        """Validate everything a worker would trip on, then store the job; (job, created).
        ``cancel_after_s`` (the Cancel-After header) and the body's field: the earlier deadline wins.
        ``keep_input`` keeps the image past the run (a /v1 video can be remixed)."""
        webhook = None
        if body.callback_url:
            if self.settings.webhook_secret is None:
                raise InvalidFieldError("callback_url needs webhooks to be configured (I2V_WEBHOOK_SECRET)")
            url = await check_callback_url(body.callback_url, self.settings.webhook_allow_private)
            webhook = Webhook(url=url, events=list(dict.fromkeys(body.webhook_events)))
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
        deadlines = [d for d in (body.cancel_after_s, cancel_after_s) if d is not None]
        job = Job(owner=owner, params=params, width=prepared.width, height=prepared.height, base_url=base_url,
                  webhook=webhook, created_at=now, updated_at=now, run_after=now,
                  deadline_at=now + self.settings.job_deadline_s,
                  cancel_at=now + min(deadlines) if deadlines else None, keep_input=keep_input,
                  remixed_from=remixed_from)
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

    async def submit_batch(self, batch: BatchRequest, owner: str, base_url: str,
                           cancel_after_s: float | None = None) -> list[BatchItemOutcome]:
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
                job, _ = await self.submit(body, owner, base_url, cancel_after_s=cancel_after_s)
            except ValidationError as exc:
                results.append(BatchItemOutcome(index, error=InvalidFieldError(describe_validation(exc.errors()))))
            except ApiError as exc:
                results.append(BatchItemOutcome(index, error=exc))
            else:
                results.append(BatchItemOutcome(index, job=job))
        if all(outcome.job is None for outcome in results):
            raise _every_item_rejected(results)
        return results

    async def get(self, job_id: str, owner: str) -> Job:
        job = await self.store.get(job_id)
        # Another caller's job is as unknown as a missing one.
        if job is None or job.owner != owner:
            raise NotFoundError(f"no job {shown_id(job_id)}")
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
            raise NotFoundError(f"no job {shown_id(job_id)}")
        return job

    async def load_input(self, job_id: str, owner: str) -> bytes | None:
        """The job's input image as the model got it (PNG at the video's size), while it is kept."""
        await self.get(job_id, owner)
        return await self.store.load_input(job_id)

    async def delete(self, job_id: str, owner: str) -> Job:
        """Forget an ended job, its input and its files (its video and poster); the job as it was.
        One still queued or running must be cancelled and have ended first: ``ConflictError``."""
        job = await self.get(job_id, owner)
        if not job.status.final:
            raise ConflictError(f"job {job_id} is {job.status.value}; cancel it and wait for it to end first")
        await self.store.delete(job_id)
        if job.result is not None:
            self.generation.discard(job.result)
        return job

    async def wait(self, job: Job, seconds: float) -> Job:
        """The job once it has ended, or as it is after ``seconds``."""
        async def ended() -> None:
            async for _ in self.events(job.id, job.events):
                pass
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ended(), seconds)
        return await self.get(job.id, job.owner)

    async def place(self, job: Job, max_age_s: float = 0.0) -> Place:
        """The job's place in the queue and its estimated seconds to the end (queue.py), from a
        snapshot at most ``max_age_s`` old that holds the job."""
        if job.status.final:
            return Place()
        snapshot = await self.snapshot(max_age_s)
        if job.status is JobStatus.queued and not snapshot.holds(job) and max_age_s > 0:
            snapshot = await self.snapshot()  # queued since that snapshot
        return snapshot.place(job)

    async def snapshot(self, max_age_s: float = 0.0) -> QueueSnapshot:
        """The queue as it is, or as it was up to ``max_age_s`` ago: the streams of waiting jobs
        share one read of the queue a second instead of one each."""
        if max_age_s > 0 and self._last_snapshot is not None \
                and time.monotonic() - self._last_snapshot[0] <= max_age_s:
            return self._last_snapshot[1]
        queued = await self.store.jobs_in("queued", math.inf, self.settings.max_queued_total)
        running = await self.store.jobs_in("running", math.inf, RUNNING_WINDOW)
        turns = await self.store.turns(sorted({job.owner for job in queued}))
        snapshot = QueueSnapshot(queued, running, self._seconds_per_step, turns)
        self._seconds_per_step = snapshot.s_per_step  # remembered for when nothing runs
        self._last_snapshot = (time.monotonic(), snapshot)
        return snapshot

    async def _poll(self, job_id: str, after: int) -> AsyncIterator[JobEvent | None]:
        """The job's events after ``after`` as they are recorded, up to its final one, and None
        at each look that found nothing new. When the job already ended at or before ``after`` (a
        resume after the final event, a wait on an ended job) its final event comes again, alone:
        a stream of an ended job always ends with it."""
        checked_end = False
        while True:
            events = await self.store.events_after(job_id, after)
            if not events and not checked_end:
                job = await self.store.get(job_id)
                if job is None:
                    return
                if job.status.final:
                    yield next(iter(await self.store.events_after(job_id, job.events - 1)), None)
                    return
                checked_end = True
            for event in events:
                yield event
                after = event.id
                if event.type in FINAL_TYPES:
                    return
            if not events:
                yield None
            await asyncio.sleep(EVENT_POLL_S)

    async def events(self, job_id: str, after: int = 0) -> AsyncIterator[JobEvent]:
        """The job's events with an id above ``after``, as they are recorded, up to its final one."""
        async for event in self._poll(job_id, after):
            if event is not None:
                yield event

    async def watch(self, job_id: str, after: int = 0) -> AsyncIterator[JobEvent]:
        """``events`` for a status stream: while the job waits, each queued event carries its place,
        and a new queued event (with the id of the last one logged) follows when the place moves."""
        last_id, sent, looked = after, Place(), 0.0
        async for event in self._poll(job_id, after):
            if event is not None:
                last_id = event.id
            if event is not None and event.type != JobStatus.queued.value:
                yield event
                continue
            if event is None and time.monotonic() - looked < PLACE_POLL_S:
                continue
            looked = time.monotonic()
            job = await self.store.get(job_id)
            if job is None or job.status is not JobStatus.queued:
                if event is not None:
                    yield event
                continue
            place = await self.place(job, max_age_s=PLACE_POLL_S / 2)
            if event is None and not _moved(sent, place):
                continue
            sent = place
            base = event or JobEvent(id=last_id, type=JobStatus.queued.value, at=job.updated_at, message=job.message)
            yield base.model_copy(update={"queue_position": place.queue_position, "eta_s": place.eta_s})


def shown_id(job_id: str, limit: int = 40) -> str:
    """A caller's job id as an answer may echo it: at most a short prefix of whatever was sent."""
    return job_id if len(job_id) <= limit else job_id[:limit] + "..."


def _every_item_rejected(outcomes: list[BatchItemOutcome]) -> ApiError:
    """One error for a batch that made no job: 422, listing each item's reason; but when every item
    met the same full queue (429 or 503), that status with its Retry-After, since a retry may pass."""
    errors = [outcome.error for outcome in outcomes if outcome.error is not None]
    reasons = "; ".join(f"item {outcome.index}: {outcome.error.message[:300]}"
                        for outcome in outcomes if outcome.error is not None)
    statuses = {error.status for error in errors}
    error = errors[0] if statuses in ({429}, {503}) else InvalidFieldError("")
    return type(error)(f"every item of the batch was rejected: {reasons}", error.headers)


def _moved(before: Place, after: Place) -> bool:
    """Whether a waiting client should hear of the new place: another position, or an ETA that
    changed by more than a few seconds (it drifts a little at every look)."""
    if before.queue_position != after.queue_position or (before.eta_s is None) != (after.eta_s is None):
        return True
    return before.eta_s is not None and after.eta_s is not None and abs(before.eta_s - after.eta_s) >= ETA_MOVE_S
