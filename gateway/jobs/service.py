"""What the job routes call: submit (with idempotency and queue limits), read, list, cancel."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import datetime, timezone

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
from gateway.jobs.records import IdempotencyConflictError, Job, Webhook
from gateway.jobs.store import IdempotencyKey, JobStore
from gateway.jobs.webhooks import check_callback_url
from gateway.logs import prompt_for_log
from gateway.schemas import (
    BatchItemResult,
    BatchRequest,
    BatchResponse,
    DeliveryAttemptView,
    GenerateResponse,
    JobErrorView,
    JobProgressView,
    JobRequest,
    JobResponse,
    JobStatus,
    VideoParams,
    WebhookView,
)
from gateway.service import GenerationService, RenderedVideo

JOBS_PATH = "/api/v1/jobs"
logger = logging.getLogger("gateway.jobs")


def _when(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=timezone.utc)


class JobService:
    def __init__(self, settings: Settings, store: JobStore, generation: GenerationService,
                 wake: asyncio.Event | None = None) -> None:
        self.settings = settings
        self.store = store
        self.generation = generation
        self.wake = wake  # set on submit so a local worker starts at once

    async def store_readiness(self) -> tuple[bool, str]:
        """(ready, reason) of the job store, for ``/readyz``."""
        try:
            await self.store.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready, with its reason
            return False, f"the job store is not reachable: {type(exc).__name__}"
        return True, ""

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
        job = Job(owner=owner, params=params,
                  width=prepared.width, height=prepared.height, base_url=self.settings.public_base_url or base_url,
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

    async def submit_batch(self, batch: BatchRequest, owner: str, base_url: str) -> BatchResponse:
        """Each item is its own job; a bad item is reported alone and the others still run."""
        if len(batch.items) > self.settings.max_batch_items:
            raise InvalidFieldError(f"a batch holds at most {self.settings.max_batch_items} items, "
                                    f"not {len(batch.items)}")
        results: list[BatchItemResult] = []
        for index, item in enumerate(batch.items):
            fields = {**batch.defaults, **item}
            if batch.callback_url and "callback_url" not in item:
                fields["callback_url"] = batch.callback_url
            try:
                body = JobRequest.model_validate(fields)
                job, _ = await self.submit(body, owner, base_url)
            except ValidationError as exc:
                results.append(BatchItemResult(index=index, error=JobErrorView(
                    status=422, message=describe_validation(exc.errors()))))
            except ApiError as exc:
                results.append(BatchItemResult(index=index, error=JobErrorView(status=exc.status,
                                                                               message=exc.message)))
            else:
                results.append(BatchItemResult(index=index, job=self.view(job)))
        accepted = sum(1 for r in results if r.job is not None)
        return BatchResponse(accepted=accepted, rejected=len(results) - accepted, items=results)

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
                return job.finish(JobStatus.cancelled, "cancelled before it started")
            if job.status is JobStatus.running and not job.cancel_requested:
                return job.model_copy(update={"cancel_requested": True, "message": "cancelling",
                                              "updated_at": time.time()})
            return None

        job, _ = await self.store.mutate(job_id, change)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        return job

    def view(self, job: Job) -> JobResponse:
        result = None
        if job.result is not None:
            path = self.generation.outputs.directory / job.result.video_file
            result = self.generation.response(RenderedVideo(
                path=path, seed=job.result.seed, width=job.result.width, height=job.result.height,
                num_frames=job.result.num_frames, fps=job.result.fps, elapsed_s=job.result.inference_time,
                cached=job.result.cached), job.base_url)
        return job_response(job, result)


def job_response(job: Job, result: GenerateResponse | None) -> JobResponse:
    progress = None
    if job.progress is not None and job.progress.total > 0:
        progress = JobProgressView(step=job.progress.step, total=job.progress.total,
                                   fraction=round(job.progress.step / job.progress.total, 4))
    error = None
    if job.status is JobStatus.failed:
        error = JobErrorView(status=job.error_status or 500, message=job.message)
    webhook = None
    if job.webhook is not None:
        webhook = WebhookView(url=job.webhook.url, state=job.webhook.state.value, attempts=[
            DeliveryAttemptView(at=_when(a.at), status_code=a.status_code, error=a.error, duration_ms=a.duration_ms)
            for a in job.webhook.attempts])
    return JobResponse(
        job_id=job.id, status=job.status, message=job.message, status_url=f"{job.base_url}{JOBS_PATH}/{job.id}",
        created_at=_when(job.created_at), started_at=_when(job.started_at), finished_at=_when(job.finished_at),
        progress=progress, result=result, error=error, attempts=job.attempts, webhook=webhook)
