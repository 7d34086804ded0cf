"""Job workers: claim a queued job, run it through the model, keep its lease and progress, finish it.

A worker claims a job by moving it to running with a lease that it renews every heartbeat and
on every progress step. A job whose lease runs out (its gateway was killed) is put back by the
reaper, so an accepted job is never lost. The model is reached through ``Renderer``: the
generation service in the gateway, a fake in unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import Protocol

from gateway.config import Settings
from gateway.errors import ApiError, ModelUnavailableError
from gateway.generation.progress import Progress
from gateway.generation.results import VideoResult
from gateway.generation.service import PreparedInput
from gateway.jobs.loops import Wake
from gateway.jobs.records import Job, JobStatus
from gateway.jobs.store import JobStore
from gateway.schemas import VideoParams

logger = logging.getLogger("gateway.jobs")
ProgressStream = AsyncGenerator[Progress, None]
# How long a worker waits for the progress model to acknowledge a watch before it runs the job
# without progress, and for the last steps to arrive after the video is done.
PROGRESS_ACK_S = 10.0
PROGRESS_DRAIN_S = 5.0


class Renderer(Protocol):
    async def render(self, prepared: PreparedInput, params: VideoParams, request_id: str = "",
                     timeout_s: float | None = None) -> VideoResult: ...

    def watch_progress(self, request_id: str) -> AsyncGenerator[Progress, None]: ...

    def discard(self, result: VideoResult) -> None: ...


class JobWorker:
    def __init__(self, settings: Settings, store: JobStore, renderer: Renderer, worker_id: str, wake: Wake) -> None:
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.worker_id = worker_id
        self.wake = wake
        self.heartbeat_s = min(1.0, settings.job_lease_s / 3)

    async def loop(self) -> None:
        while True:
            job = await self.claim()
            if job is None:
                await self.wake.sleep(0.5)
                continue
            await self.run(job)

    async def claim(self) -> Job | None:
        now = time.time()
        for job_id in await self.store.due("queued", now, limit=10):
            def change(job: Job) -> Job | None:
                if job.status is not JobStatus.queued or job.run_after > now:
                    return None
                return job.claim(self.worker_id, self.settings.job_lease_s, now)
            job, claimed = await self.store.mutate(job_id, change)
            if claimed and job is not None:
                return job
        return None

    async def _finish(self, job: Job, change: Callable[[Job], Job]) -> Job | None:
        """Apply a change if this worker still holds the job; drops the input once final."""
        updated, changed = await self.store.mutate(job.id, lambda j: change(j) if j.held_by(self.worker_id) else None)
        if not changed or updated is None:
            return None  # the lease was lost: another worker owns the job now
        if updated.status.final:
            await self.store.drop_input(job.id)
            if updated.webhook is not None:
                self.wake.set()
        return updated

    async def run(self, job: Job) -> None:
        if time.time() > job.deadline_at:
            await self._fail(job, 504, f"the job did not finish within {self.settings.job_deadline_s:.0f} s")
            return
        image = await self.store.load_input(job.id)
        if image is None:
            await self._fail(job, 500, "the job's input image is missing from the store")
            return
        prepared = PreparedInput(image=image, width=job.width, height=job.height)
        timeout = max(1.0, min(self.settings.inference_timeout_s, job.deadline_at - time.time()))
        # One Triton request id per attempt: the progress model remembers ended ids for a while,
        # and a retry under the same id would find its watch ended at once.
        request_id = f"{job.id}-{job.attempts}"
        progress = await self._watch(request_id)
        task = asyncio.create_task(self.renderer.render(prepared, job.params, request_id=request_id,
                                                        timeout_s=timeout))
        try:
            current = await self._supervise(job, task, progress)
        except asyncio.CancelledError:
            task.cancel()
            if (made := _made(task)) is not None:
                self.renderer.discard(made)
            await self._release(job)
            raise
        finally:
            if progress is not None:
                await progress.aclose()
        # The video may have been made by the time the lease turned out lost or the job
        # cancelled: it must end up in the job or be discarded, never left behind.
        made = _made(task)
        if current is None:
            if made is not None:
                self.renderer.discard(made)
            return  # lost to another worker, which now owns the job
        if current.status is JobStatus.cancelling and made is not None:
            # It ended before the cancel reached the model (cancelling -> succeeded is legal).
            if await self._finish(job, lambda j: j.succeed(made)) is None:
                self.renderer.discard(made)
            return
        if current.status is JobStatus.cancelling:
            note = f" after {current.progress.step} of {current.progress.total} denoising steps" \
                if current.progress else ""
            await self._finish(job, lambda j: j.cancel(f"cancelled by the caller{note}"))
            return
        try:
            result = task.result()
        except ModelUnavailableError as exc:
            await self._retry_later(job, exc.message)
        except ApiError as exc:
            await self._fail(job, exc.status, exc.message)
        except Exception as exc:  # noqa: BLE001 - the job fails, the worker goes on
            logger.exception("job %s failed unexpectedly", job.id)
            await self._fail(job, 500, f"internal error: {type(exc).__name__}")
        else:
            if await self._finish(job, lambda j: j.succeed(result)) is None:
                self.renderer.discard(result)  # nobody will point to this video

    async def _watch(self, job_id: str) -> ProgressStream | None:
        """The job's progress stream, acknowledged by the model side before the job is sent, so no
        step is missed; None (the job runs without progress) when progress is off or away."""
        stream = self.renderer.watch_progress(job_id)
        try:
            # Bounded by the lease too: it is not renewed while the worker waits here.
            await asyncio.wait_for(anext(stream), min(PROGRESS_ACK_S, self.settings.job_lease_s / 2))
        except (StopAsyncIteration, ApiError, asyncio.TimeoutError) as exc:
            if not isinstance(exc, StopAsyncIteration):
                logger.warning("job %s runs without progress: %s", job_id, exc or "no answer from the progress model")
            await stream.aclose()
            return None
        return stream

    async def _supervise(self, job: Job, task: asyncio.Task, progress: ProgressStream | None) -> Job | None:
        """Renew the lease and record progress until the task ends or the job is cancelled; the
        job as last stored, or None when this worker lost it (the task is cancelled then)."""
        next_step: asyncio.Future | None = asyncio.ensure_future(anext(progress)) if progress is not None else None
        current: Job | None = job
        try:
            while not task.done():
                waiting = {task} if next_step is None else {task, next_step}
                done, _ = await asyncio.wait(waiting, timeout=self.heartbeat_s, return_when=asyncio.FIRST_COMPLETED)
                step = None
                if next_step is not None and next_step in done:
                    step, next_step = self._step_of(next_step), None
                    if step is not None and progress is not None:
                        next_step = asyncio.ensure_future(anext(progress))
                current = await self._renew(job, step)
                if current is None or current.status is JobStatus.cancelling:
                    task.cancel()  # cancels the gRPC call; Triton stops the model within a step
                    with contextlib.suppress(BaseException):
                        await task
                    return current
            # The last steps may arrive just after the video: record them (bounded, the lease kept)
            # so the job ends showing every step the model made. A cached video made none.
            made = _made(task)
            drain_until = time.monotonic() + PROGRESS_DRAIN_S
            while next_step is not None and made is not None and not made.cached and current is not None:
                done, _ = await asyncio.wait({next_step}, timeout=self.heartbeat_s)
                step = self._step_of(next_step) if done else None
                if done:
                    next_step = asyncio.ensure_future(anext(progress)) if step is not None and progress else None
                elif time.monotonic() > drain_until:
                    break
                current = await self._renew(job, step)
            return current
        finally:
            if next_step is not None:
                # Settled before the caller closes the stream (a pending anext would block that).
                next_step.cancel()
                with contextlib.suppress(BaseException):
                    await next_step

    @staticmethod
    def _step_of(future: asyncio.Future) -> Progress | None:
        """The step a finished ``anext`` gave; None when the stream ended or failed."""
        if future.cancelled() or future.exception() is not None:
            return None
        return future.result()

    async def _renew(self, job: Job, step: Progress | None) -> Job | None:
        lease = self.settings.job_lease_s
        current, renewed = await self.store.mutate(
            job.id, lambda j: j.renew(lease, step) if j.held_by(self.worker_id) else None)
        return current if renewed else None

    async def _fail(self, job: Job, status: int, message: str) -> None:
        logger.info("job %s failed (%d): %s", job.id, status, message)
        await self._finish(job, lambda j: j.fail(status, message))

    async def _retry_later(self, job: Job, reason: str) -> None:
        now = time.time()
        delay = min(30.0, 2.0 ** min(job.attempts, 5))
        if now + delay > job.deadline_at:
            await self._fail(job, 503, f"{reason} (gave up after waiting {now - job.created_at:.0f} s)")
            return
        logger.info("job %s waits %.0f s for the model: %s", job.id, delay, reason)
        await self._finish(job, lambda j: j.requeue(f"waiting to retry: {reason}", now + delay, now=now))

    async def _release(self, job: Job) -> None:
        """On shutdown: back to the queue at once, and this start does not count as an attempt."""
        def release(j: Job) -> Job:
            if j.status is JobStatus.cancelling:
                return j.cancel("cancelled by the caller as its gateway stopped")
            return j.requeue("queued again: its gateway stopped", counts_as_attempt=False)
        with contextlib.suppress(Exception):
            await asyncio.shield(self._finish(job, release))


def _made(task: asyncio.Task) -> VideoResult | None:
    """The video a render task made, if it finished with one."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()
