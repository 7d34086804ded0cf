"""Job workers: claim a queued job, run it through the model, keep its lease and progress, finish it.

A worker claims a job by moving it to running with a lease that it renews every heartbeat and
on every progress step. A job whose lease runs out (its gateway was killed) is put back by the
reaper, so an accepted job is never lost. The model is reached through ``Renderer``: the
generation service in the gateway, a fake in unit tests.

Work is done once: every write of a worker is fenced by the claim it holds (``Job.held_by``
with the job's ``generation``); a worker that loses its job, to another worker or to a store
outage longer than its lease, cancels its Triton request, and any video it made anyway is
discarded at once. Waiting for the model or the store never counts as a lost worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncGenerator, Callable
from typing import Protocol

from gateway.config import Settings
from gateway.errors import STORE_ERRORS, ApiError, ModelProcessLostError, ModelUnavailableError
from gateway.generation.progress import Progress
from gateway.generation.results import VideoResult
from gateway.generation.service import PreparedInput
from gateway.jobs.loops import Wake
from gateway.jobs.queue import RUNNING_WINDOW, fair_order
from gateway.jobs.records import Job, JobStatus
from gateway.jobs.store import Change, JobStore
from gateway.schemas import VideoParams

logger = logging.getLogger("gateway.jobs")
ProgressStream = AsyncGenerator[Progress, None]
# How long a worker waits for the progress model to acknowledge a watch before it runs the job
# without progress, and for the last steps to arrive after the video is done.
PROGRESS_ACK_S = 10.0
PROGRESS_DRAIN_S = 5.0
STORE_RETRY_S = 0.5  # how often a worker tries the store again while it is away
MODEL_RETRY_MAX_S = 30.0  # the longest backoff of a job waiting for the model (ModelWatch ends it sooner)


class Renderer(Protocol):
    async def render(self, prepared: PreparedInput, params: VideoParams, request_id: str = "",
                     timeout_s: float | None = None) -> VideoResult: ...

    def watch_progress(self, request_id: str) -> AsyncGenerator[Progress, None]: ...

    def discard(self, result: VideoResult) -> None: ...


class JobWorker:
    def __init__(self, settings: Settings, store: JobStore, renderer: Renderer, worker_id: str, wake: Wake,
                 model_ready: Callable[[], bool] = lambda: True) -> None:
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.worker_id = worker_id
        self.wake = wake
        # What the model watch last saw (it asks every second): a job waiting for the model is
        # not tried again while the model is known away, only once the watch resumes it (or
        # when its next wait would pass its deadline, so that it still ends then).
        self.model_ready = model_ready
        self.heartbeat_s = min(1.0, settings.job_lease_s / 3)

    async def loop(self) -> None:
        while True:
            job = await self.claim()
            if job is None:
                await self.wake.sleep(0.5)
                continue
            await self.run(job)

    async def claim(self) -> Job | None:
        """The next job in fair order (queue.py: keys in turn), moved to running under this worker's
        lease; a job whose Cancel-After passed while it waited is cancelled instead."""
        now = time.time()
        queued = await self.store.jobs_in("queued", now, self.settings.max_queued_total)
        if not queued:
            return None
        running = await self.store.jobs_in("running", math.inf, RUNNING_WINDOW)
        turns = await self.store.turns(sorted({job.owner for job in queued}))
        for candidate in fair_order(queued, running, turns):
            def change(job: Job) -> Job | None:
                if job.status is not JobStatus.queued or job.run_after > now:
                    return None
                if job.past_cancel_at(now):
                    return job.cancel(job.deadline_message(), now)
                if job.waiting_for_model and not self.model_ready() and now + _model_backoff(job) <= job.deadline_at:
                    return None
                return job.claim(self.worker_id, self.settings.job_lease_s, now)
            job, changed = await self.store.mutate(candidate.id, change)
            if changed and job is not None and job.status is JobStatus.running:
                await self.store.record_turn(job.owner, now)
                return job
            if changed and job is not None and job.webhook is not None:
                self.wake.set()  # cancelled: its webhook is due
        return None

    def _held(self, job: Job, change: Callable[[Job], Job | None]) -> Change:
        """``change``, applied only while this worker's claim of ``job`` still holds it (fenced)."""
        return lambda j: change(j) if j.held_by(self.worker_id, job.generation) else None

    async def _mutate(self, job: Job, change: Change, until: float | None) -> tuple[Job | None, bool]:
        """``store.mutate``, tried again every ``STORE_RETRY_S`` through store errors up to ``until``
        (None: once). A change is fenced and read afresh each try, so trying again is safe."""
        while True:
            try:
                return await self.store.mutate(job.id, change)
            except STORE_ERRORS as exc:
                if until is None or time.time() + STORE_RETRY_S > until:
                    raise
                logger.warning("job %s: the job store is unavailable (%s); trying again", job.id, exc)
                await asyncio.sleep(STORE_RETRY_S)

    def _outage_bound(self, job: Job) -> float:
        """How long a worker keeps trying to record what it did while the store is away."""
        return max(job.deadline_at, time.time() + self.settings.job_lease_s)

    async def _finish(self, job: Job, change: Callable[[Job], Job], retry: bool = True) -> Job | None:
        """Apply a change if this worker's claim still holds the job; drops the input once final."""
        updated, changed = await self._mutate(job, self._held(job, change),
                                              self._outage_bound(job) if retry else None)
        if not changed or updated is None:
            return None  # the lease was lost: another worker owns the job now
        if updated.status.final:
            if not job.keep_input:
                await self.store.drop_input(job.id)
            if updated.webhook is not None:
                self.wake.set()
        return updated

    async def run(self, job: Job) -> None:
        try:
            await self._run(job)
        except STORE_ERRORS as exc:
            # The store stayed away longer than the lease: the render was cancelled and nothing it
            # made kept. The job goes back to the queue as soon as the store answers, without
            # counting a lost worker (the reaper waits a lease after the store is back).
            logger.warning("job %s: the job store is unavailable (%s); stopped it, handing it back", job.id, exc)
            await self._mutate(job, self._held(job, functools.partial(_hand_back, why="the job store was away")),
                               self._outage_bound(job))

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
        # One Triton request id per claim: the progress model remembers ended ids for a while,
        # and a retry under the same id would find its watch ended at once.
        request_id = f"{job.id}-{job.generation}"
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
        except STORE_ERRORS:
            if (made := _made(task)) is not None:  # _supervise cancelled the render; it may have ended first
                self.renderer.discard(made)
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
            await self._succeed(job, made)
            return
        if current.status is JobStatus.cancelling:
            await self._finish(job, lambda j: j.cancel(j.deadline_message() if j.past_cancel_at()
                                                       else f"cancelled by the caller{j.steps_note()}"))
            return
        try:
            result = task.result()
        except ModelProcessLostError as exc:
            await self._retry_later(job, exc.message, lost_worker=True)
        except ModelUnavailableError as exc:
            await self._retry_later(job, exc.message)
        except ApiError as exc:
            await self._fail(job, exc.status, exc.message)
        except Exception as exc:  # noqa: BLE001 - the job fails, the worker goes on
            logger.exception("job %s failed unexpectedly", job.id)
            await self._fail(job, 500, f"internal error: {type(exc).__name__}")
        else:
            await self._succeed(job, result)

    async def _succeed(self, job: Job, made: VideoResult) -> None:
        """Record the video, or discard it when the job is no longer this worker's: nobody will
        point to it. A write that reached the store though its answer was lost is found on the
        next try (the job already holds this video), and the video is kept."""
        after: Job | None = None
        try:
            after, _ = await self._mutate(job, self._held(job, lambda j: j.succeed(made)), self._outage_bound(job))
        finally:
            recorded = after is not None and after.result is not None and after.result.video_file == made.video_file
            if not recorded:
                self.renderer.discard(made)
        if recorded and after is not None:
            if not job.keep_input:
                await self.store.drop_input(job.id)
            if after.webhook is not None:
                self.wake.set()

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
                current = await self._renew(job, step, current.lease_until if current else None)
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
                current = await self._renew(job, step, current.lease_until)
            return current
        except STORE_ERRORS:
            # The lease could not be kept: another worker may hold the job soon, so this render stops.
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
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

    async def _renew(self, job: Job, step: Progress | None, lease_until: float | None) -> Job | None:
        """The job with its lease renewed, or None when this worker lost it. Through a store outage
        it tries again while its lease lasts (less a heartbeat), then raises the store's error."""
        lease = self.settings.job_lease_s
        def renew(j: Job) -> Job | None:
            renewed = j.renew(lease, step)
            # Past the caller's Cancel-After: stopped as if cancelled, within a heartbeat.
            return renewed.request_cancel() if renewed.status is JobStatus.running and j.past_cancel_at() \
                else renewed
        current, renewed = await self._mutate(job, self._held(job, renew), (lease_until or 0) - self.heartbeat_s)
        return current if renewed else None

    async def _fail(self, job: Job, status: int, message: str) -> None:
        logger.info("job %s failed (%d): %s", job.id, status, message)
        await self._finish(job, lambda j: j.fail(status, message))

    async def _retry_later(self, job: Job, reason: str, lost_worker: bool = False) -> None:
        """Back to the queue with a growing backoff; ModelWatch makes it due as soon as the model is
        ready again. Neither the wait nor this start counts as a lost worker, unless the model's
        process died under it (``lost_worker``): a job that kills the model every time must end."""
        now = time.time()
        if lost_worker and job.lost_workers + 1 >= self.settings.job_max_attempts:
            await self._fail(job, 502, f"the model's process died {job.lost_workers + 1} times while running this "
                             "job; giving up")
            return
        delay = _model_backoff(job)
        if now + delay > job.deadline_at:
            await self._fail(job, 503, f"{reason} (gave up after waiting {now - job.created_at:.0f} s)")
            return
        logger.info("job %s waits up to %.0f s for the model: %s", job.id, delay, reason)
        await self._finish(job, lambda j: j.wait_for_model(reason, now + delay, now=now, lost_worker=lost_worker))

    async def _release(self, job: Job) -> None:
        """On shutdown: back to the queue at once, and this start does not count as a lost worker."""
        release = functools.partial(_hand_back, why="its gateway stopped")
        with contextlib.suppress(Exception):
            await asyncio.shield(self._finish(job, release, retry=False))


def _model_backoff(job: Job) -> float:
    """How long a job waits for the model after its next failed try: growing with its waits."""
    return min(MODEL_RETRY_MAX_S, 2.0 ** min(job.model_waits + 1, 5))


def _hand_back(job: Job, why: str) -> Job:
    """A job its worker stops without a fault of the job's: queued again, or cancelled if the
    caller asked for that meanwhile. Never a lost worker."""
    if job.status is JobStatus.cancelling:
        return job.cancel(f"cancelled by the caller as {why}")
    return job.requeue(f"queued again: {why}")


def _made(task: asyncio.Task) -> VideoResult | None:
    """The video a render task made, if it finished with one."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()
