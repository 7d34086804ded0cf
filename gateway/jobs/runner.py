"""The worker side of jobs: claim, run through Triton, report progress, finish, call back.

Each gateway runs ``job_workers`` loops. A worker claims a queued job by moving it to running
with a lease that it renews every heartbeat; a job whose lease runs out (its gateway was
killed) goes back to the queue, so an accepted job is never lost. Triton being away puts the
job back in the queue with a backoff until its deadline, then fails it with a clear message.
Webhook deliveries and retention sweeps are loops here too, driven by the store's indexes, so
they also survive restarts and are shared between replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from redis.exceptions import RedisError

from gateway.config import Settings
from gateway.errors import ApiError, InvalidFieldError, ModelUnavailableError
from gateway.jobs.records import DeliveryAttempt, Job, JobProgress, JobResult, WebhookState
from gateway.jobs.service import JobService
from gateway.jobs.store import JobStore
from gateway.jobs.webhooks import check_callback_url, deliver, sign_event
from gateway.schemas import JobStatus
from gateway.service import GenerationService, PreparedInput

logger = logging.getLogger("gateway.jobs")


def read_progress(directory: Path, job_id: str) -> JobProgress | None:
    """The model's ``"<done> <total>"`` file for this request, if it has written one."""
    try:
        done, total = (directory / job_id).read_text().split()
        return JobProgress(step=int(done), total=int(total))
    except (OSError, ValueError):
        return None


class JobRunner:
    def __init__(self, settings: Settings, store: JobStore, generation: GenerationService, jobs: JobService) -> None:
        self.settings = settings
        self.store = store
        self.generation = generation
        self.jobs = jobs
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.wake = jobs.wake or asyncio.Event()
        self.heartbeat_s = min(1.0, settings.job_lease_s / 3)
        self._tasks: list[asyncio.Task] = []
        self._deliveries: set[asyncio.Task] = set()
        self._http = httpx.AsyncClient()

    def start(self) -> None:
        loops: list[Callable[[], Awaitable[None]]] = [self._worker] * self.settings.job_workers
        loops += [self._reaper, self._webhooks, self._retention]
        self._tasks = [asyncio.create_task(self._forever(loop)) for loop in loops]

    async def stop(self) -> None:
        """Hand running jobs back to the queue so the next start (or a replica) runs them at once."""
        for task in [*self._tasks, *self._deliveries]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._deliveries, return_exceptions=True)
        await self._http.aclose()

    async def _forever(self, loop: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except (RedisError, sqlite3.Error) as exc:
                # The store is away: one line, not a traceback a second; the loop tries again.
                logger.warning("job loop %s: job store unavailable (%s); retrying in 2 s", loop.__name__, exc)
                await asyncio.sleep(2)
            except Exception:  # noqa: BLE001 - nothing may end the loop
                logger.exception("job loop %s failed; restarting it", loop.__name__)
                await asyncio.sleep(1)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)
        self.wake.clear()

    # --- running jobs ---

    async def _worker(self) -> None:
        while True:
            job = await self._claim()
            if job is None:
                await self._sleep(0.5)
                continue
            await self._run(job)

    async def _claim(self) -> Job | None:
        now = time.time()
        for job_id in await self.store.due("queued", now, limit=10):
            def change(job: Job) -> Job | None:
                if job.status is not JobStatus.queued or job.run_after > now:
                    return None
                return job.model_copy(update={
                    "status": JobStatus.running, "worker": self.worker_id,
                    "lease_until": now + self.settings.job_lease_s,
                    "attempts": job.attempts + 1, "started_at": job.started_at or now, "updated_at": now,
                    "message": "running", "progress": None})
            job, claimed = await self.store.mutate(job_id, change)
            if claimed and job is not None:
                return job
        return None

    async def _finish(self, job: Job, change: Callable[[Job], Job]) -> Job | None:
        """Apply a final change if this worker still holds the job; drops the input once final."""
        def guarded(current: Job) -> Job | None:
            if current.status is not JobStatus.running or current.worker != self.worker_id:
                return None  # the lease was lost: another worker owns the job now
            return change(current)
        updated, changed = await self.store.mutate(job.id, guarded)
        if changed and updated is not None and updated.status.final:
            await self.store.drop_input(job.id)
            if updated.webhook is not None:
                self.wake.set()
        return updated if changed else None

    async def _run(self, job: Job) -> None:
        if time.time() > job.deadline_at:
            await self._fail(job, 504, f"the job did not finish within {self.settings.job_deadline_s:.0f} s")
            return
        image = await self.store.load_input(job.id)
        if image is None:
            await self._fail(job, 500, "the job's input image is missing from the store")
            return
        prepared = PreparedInput(image=image, width=job.width, height=job.height)
        timeout = max(1.0, min(self.settings.inference_timeout_s, job.deadline_at - time.time()))
        task = asyncio.create_task(self.generation.render(prepared, job.params, request_id=job.id, timeout_s=timeout))
        try:
            outcome, current = await self._watch(job, task)
        except asyncio.CancelledError:
            task.cancel()
            await self._release(job)
            raise
        if outcome == "lost":
            return
        if outcome == "cancelled":
            progress = current.progress if current is not None else None
            note = f" after {progress.step} of {progress.total} denoising steps" if progress else ""
            await self._finish(job, lambda j: j.finish(JobStatus.cancelled, f"cancelled by the caller{note}"))
            return
        try:
            rendered = task.result()
        except ModelUnavailableError as exc:
            await self._retry_later(job, exc.message)
        except ApiError as exc:
            await self._fail(job, exc.status, exc.message)
        except Exception as exc:  # noqa: BLE001 - the job fails, the worker goes on
            logger.exception("job %s failed unexpectedly", job.id)
            await self._fail(job, 500, f"internal error: {type(exc).__name__}")
        else:
            result = JobResult(video_file=rendered.path.name, seed=rendered.seed, width=rendered.width,
                               height=rendered.height, num_frames=rendered.num_frames, fps=rendered.fps,
                               inference_time=round(rendered.elapsed_s, 3), cached=rendered.cached)
            message = "video served from the cache" if rendered.cached else "video generated"
            await self._finish(job, lambda j: j.finish(JobStatus.succeeded, message, result=result))

    async def _watch(self, job: Job, task: asyncio.Task) -> tuple[str, Job | None]:
        """Renew the lease and copy progress until the task ends: ('done' | 'cancelled' | 'lost',
        the job as last stored)."""
        current: Job | None = job
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.heartbeat_s)
            if done:
                return "done", current
            progress = read_progress(self.settings.progress_dir, job.id)
            now = time.time()

            def renew(current: Job, now: float = now, progress: JobProgress | None = progress) -> Job | None:
                if current.status is not JobStatus.running or current.worker != self.worker_id:
                    return None
                return current.model_copy(update={"lease_until": now + self.settings.job_lease_s,
                                                  "progress": progress or current.progress, "updated_at": now})
            current, renewed = await self.store.mutate(job.id, renew)
            if not renewed or current is None or current.cancel_requested:
                task.cancel()  # cancels the gRPC call; Triton stops the model within a step
                with contextlib.suppress(BaseException):
                    await task
                return ("cancelled" if renewed and current is not None else "lost"), current

    async def _fail(self, job: Job, status: int, message: str) -> None:
        logger.info("job %s failed (%d): %s", job.id, status, message)
        await self._finish(job, lambda j: j.finish(JobStatus.failed, message, error_status=status))

    async def _retry_later(self, job: Job, reason: str) -> None:
        now = time.time()
        delay = min(30.0, 2.0 ** min(job.attempts, 5))
        if now + delay > job.deadline_at:
            await self._fail(job, 503, f"{reason} (gave up after waiting {now - job.created_at:.0f} s)")
            return
        logger.info("job %s waits %.0f s for the model: %s", job.id, delay, reason)
        await self._finish(job, lambda j: j.model_copy(update={
            "status": JobStatus.queued, "run_after": now + delay, "worker": None, "lease_until": None,
            "updated_at": now, "message": f"waiting to retry: {reason}"}))

    async def _release(self, job: Job) -> None:
        """On shutdown: back to the queue at once, and this start does not count as an attempt."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self._finish(job, lambda j: j.model_copy(update={
                "status": JobStatus.queued, "run_after": time.time(), "worker": None, "lease_until": None,
                "attempts": max(0, j.attempts - 1), "message": "queued again: its gateway stopped"})))

    async def _reaper(self) -> None:
        """Running jobs whose worker stopped renewing (a killed gateway) go back to the queue."""
        while True:
            now = time.time()
            for job_id in await self.store.due("running", now):
                def change(job: Job, now: float = now) -> Job | None:
                    if job.status is not JobStatus.running or (job.lease_until or 0) > now:
                        return None
                    if job.attempts >= self.settings.job_max_attempts:
                        return job.finish(JobStatus.failed, f"its gateway stopped while running it {job.attempts} "
                                          "times; giving up", error_status=500)
                    return job.model_copy(update={"status": JobStatus.queued, "run_after": now, "worker": None,
                                                  "lease_until": None, "updated_at": now,
                                                  "message": "queued again: its gateway stopped while running it"})
                job, changed = await self.store.mutate(job_id, change)
                if changed and job is not None:
                    logger.warning("job %s: lease of a stopped worker expired; now %s", job_id, job.status.value)
                    self.wake.set()
            await asyncio.sleep(self.heartbeat_s)

    # --- webhooks ---

    async def _webhooks(self) -> None:
        limit = asyncio.Semaphore(8)
        while True:
            now = time.time()
            for job_id in await self.store.due("webhook", now):
                claim_until = now + self.settings.webhook_timeout_s + 30

                def claim(job: Job, now: float = now, claim_until: float = claim_until) -> Job | None:
                    hook = job.webhook
                    if hook is None or hook.state not in (WebhookState.pending, WebhookState.delivering) \
                            or (hook.next_at or 0) > now:
                        return None
                    return job.model_copy(update={"webhook": hook.model_copy(update={
                        "state": WebhookState.delivering, "next_at": claim_until})})
                job, claimed = await self.store.mutate(job_id, claim)
                if claimed and job is not None:
                    await limit.acquire()
                    task = asyncio.create_task(self._deliver(job))
                    self._deliveries.add(task)
                    task.add_done_callback(self._deliveries.discard)
                    task.add_done_callback(lambda _: limit.release())
            await self._sleep(0.5)

    async def _deliver(self, job: Job) -> None:
        if job.webhook is None:
            return
        secret = self.settings.webhook_secret
        try:
            if secret is None:  # a replica without the secret: record it rather than send unsigned
                raise InvalidFieldError("webhooks are not configured on this gateway (I2V_WEBHOOK_SECRET)")
            message = sign_event(secret.get_secret_value(), f"{job.id}_{job.status.value}", f"job.{job.status.value}",
                                 self.jobs.view(job).model_dump(mode="json"))
            # Checked again at delivery: the name may resolve elsewhere now (DNS rebinding).
            await check_callback_url(job.webhook.url, self.settings.webhook_allow_private)
            attempt = await deliver(self._http, job.webhook.url, message, self.settings.webhook_timeout_s)
        except ApiError as exc:
            attempt = DeliveryAttempt(at=time.time(), error=exc.message, duration_ms=0)
        delays = self.settings.webhook_retry_delays_s

        def record(current: Job) -> Job | None:
            hook = current.webhook
            if hook is None:
                return None
            attempts = [*hook.attempts, attempt]
            if attempt.error is None:
                state, next_at = WebhookState.delivered, None
            elif len(attempts) > len(delays):
                state, next_at = WebhookState.failed, None
            else:
                state, next_at = WebhookState.pending, time.time() + delays[len(attempts) - 1]
            return current.model_copy(update={"webhook": hook.model_copy(update={
                "state": state, "next_at": next_at, "attempts": attempts})})
        updated, _ = await self.store.mutate(job.id, record)
        if updated is not None and updated.webhook is not None:
            logger.info("webhook for job %s: attempt %d %s", job.id, len(updated.webhook.attempts),
                        attempt.error or f"delivered ({attempt.status_code})")

    # --- retention ---

    async def _retention(self) -> None:
        interval = min(60.0, self.settings.retention_s / 4)
        while True:
            cutoff = time.time() - self.settings.retention_s
            for job_id in await self.store.due("finished", cutoff, limit=200):
                await self.store.delete(job_id)
            if self.generation.cache is not None:
                await self.generation.cache.expire(cutoff)
            removed = await asyncio.to_thread(_remove_files_older_than, self.generation.outputs.directory, cutoff)
            if removed:
                logger.info("retention: removed %d videos older than %.0f s", removed, self.settings.retention_s)
            await asyncio.sleep(interval)


def _remove_files_older_than(directory: Path, cutoff: float) -> int:
    removed = 0
    for path in directory.glob("*.mp4"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
