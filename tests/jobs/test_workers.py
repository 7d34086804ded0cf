"""JobWorker against a fake renderer and a real SQLite store: success, model errors, cancel,
lease loss, fencing, store outages, shutdown and progress off. The fake is driven by events, so nothing here waits on
a clock but the worker's own heartbeat (1 s); every wait has a generous bound."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.errors import ModelFailedError, ModelProcessLostError, ModelUnavailableError
from gateway.generation.progress import Progress
from gateway.generation.results import VideoResult
from gateway.generation.service import PreparedInput
from gateway.jobs import workers
from gateway.jobs.loops import Wake
from gateway.jobs.model_watch import ModelWatch
from gateway.jobs.records import Job, JobProgress
from gateway.jobs.sqlite_store import SQLiteJobStore
from gateway.jobs.workers import JobWorker
from gateway.schemas import JobStatus, VideoParams

BOUND_S = 20.0
IMAGE = b"png-bytes"
RESULT = VideoResult(video_file="v.mp4", seed=7, width=256, height=256, num_frames=16, fps=8, inference_time=1.5)


class FakeRenderer:
    """The Renderer protocol, scripted: ``watch_progress`` acknowledges (unless ``ack`` is False),
    sends ``steps`` of ``total``, then ends (``hold_progress`` False) or waits forever; ``render``
    waits for ``release`` (set at once when ``block`` is False), then raises ``error`` or returns
    ``result``. The events say how far each side got."""

    def __init__(self, *, steps: int = 0, total: int = 10, ack: bool = True, hold_progress: bool = False,
                 block: bool = False, error: Exception | None = None, result: VideoResult = RESULT,
                 before_return: Callable[[], Awaitable[None]] | None = None) -> None:
        self.steps, self.total, self.ack, self.hold_progress = steps, total, ack, hold_progress
        self.error, self.result, self.before_return = error, result, before_return
        self.release = asyncio.Event()
        if not block:
            self.release.set()
        self.render_started = asyncio.Event()
        self.render_cancelled = asyncio.Event()
        self.steps_taken = asyncio.Event()  # the worker asked for more after the last step
        self.progress_closed = asyncio.Event()
        self.calls: list[tuple[PreparedInput, VideoParams, str, float | None]] = []
        self.returned: list[VideoResult] = []
        self.discarded: list[VideoResult] = []

    async def render(self, prepared: PreparedInput, params: VideoParams, request_id: str = "",
                     timeout_s: float | None = None) -> VideoResult:
        self.calls.append((prepared, params, request_id, timeout_s))
        self.render_started.set()
        try:
            await self.release.wait()
            if self.before_return is not None:
                await self.before_return()
        except asyncio.CancelledError:
            self.render_cancelled.set()
            raise
        if self.error is not None:
            raise self.error
        self.returned.append(self.result)
        return self.result

    async def watch_progress(self, request_id: str) -> AsyncGenerator[Progress, None]:
        try:
            if not self.ack:
                return  # progress is off: the stream ends before its acknowledgement
            yield Progress(0, 0)
            for step in range(1, self.steps + 1):
                yield Progress(step, self.total)
            self.steps_taken.set()
            if self.hold_progress:
                await asyncio.Event().wait()
        finally:
            self.progress_closed.set()

    def discard(self, result: VideoResult) -> None:
        self.discarded.append(result)


class FlakyStore(SQLiteJobStore):
    """The SQLite store, whose writes fail while ``away`` is set (as a store outage does);
    ``failed`` is set at each failed write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.away = False
        self.failed = asyncio.Event()

    async def mutate(self, job_id, change):  # type: ignore[no-untyped-def] - the parent's signature
        if self.away:
            self.failed.set()
            raise sqlite3.OperationalError("the store is away (test)")
        return await super().mutate(job_id, change)


Scenario = Callable[[SQLiteJobStore, Callable[[FakeRenderer], JobWorker]], Awaitable[None]]


@pytest.fixture
def run(tmp_path: Path) -> Callable[[Scenario], None]:
    """Runs a scenario in a fresh event loop with a fresh SQLite store and a worker factory."""
    settings = Settings(insecure_no_auth=True, job_lease_s=3, jobs_db=tmp_path / "jobs.sqlite3",
                        outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache")

    def run_scenario(scenario: Scenario) -> None:
        async def main() -> None:
            store = FlakyStore(settings.jobs_db)

            def worker(renderer: FakeRenderer) -> JobWorker:
                made = JobWorker(settings, store, renderer, "w1", Wake())
                assert made.heartbeat_s == 1.0
                return made
            try:
                await asyncio.wait_for(scenario(store, worker), BOUND_S)
            finally:
                await store.close()
        asyncio.run(main())
    return run_scenario


async def submit(store: SQLiteJobStore, deadline_s: float = 600.0) -> Job:
    now = time.time()
    job = Job(owner="alice", params=VideoParams(prompt="a cat", steps=10), base_url="http://gw", width=256,
              height=256, created_at=now, run_after=now, deadline_at=now + deadline_s)
    await store.insert(job, IMAGE, None, 60)
    return job


async def claimed(store: SQLiteJobStore, worker: JobWorker, deadline_s: float = 600.0) -> Job:
    """A new job, as ``worker`` claims it."""
    submitted = await submit(store, deadline_s)
    job = await worker.claim()
    assert job is not None and job.id == submitted.id
    assert job.status is JobStatus.running and job.worker == "w1" and job.attempts == 1
    return job


async def stored(store: SQLiteJobStore, job_id: str) -> Job:
    job = await store.get(job_id)
    assert job is not None
    return job


def take_over(job: Job) -> Job:
    """What another worker does after the reaper gave it this job: it holds the job now."""
    return job.requeue("queued again: its gateway stopped while running it").claim("other", 30)


def test_claim_takes_due_queued_jobs_only(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        w = worker(FakeRenderer())
        assert await w.claim() is None
        job = await submit(store)
        await store.mutate(job.id, lambda j: j.model_copy(update={"run_after": time.time() + 60}))
        assert await w.claim() is None  # waiting to retry: not yet
        await store.mutate(job.id, lambda j: j.model_copy(update={"run_after": time.time() - 1}))
        got = await w.claim()
        assert got is not None and got.id == job.id and got.held_by("w1", 1) and got.attempts == 1
        assert got.lease_until is not None and got.lease_until > time.time()
        assert await stored(store, job.id) == got
        assert await w.claim() is None  # held now
    run(scenario)


def test_success_records_every_step_and_the_result(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer(steps=4, total=4, block=True)
        w = worker(fake)
        job = await claimed(store, w)
        running = asyncio.create_task(w.run(job))
        # The video is done once the model has sent every step (as Triton's order is).
        await fake.steps_taken.wait()
        fake.release.set()
        await running
        done = await stored(store, job.id)
        assert done.status is JobStatus.succeeded and done.result == RESULT
        assert done.progress == JobProgress(step=4, total=4)
        assert (done.message, done.worker, done.lease_until, done.error_status) == ("video generated", None, None,
                                                                                    None)
        assert done.finished_at is not None and done.attempts == 1
        assert await store.load_input(job.id) is None  # a finished job's input is dropped
        assert fake.discarded == [] and fake.progress_closed.is_set()
        [(prepared, params, request_id, timeout_s)] = fake.calls
        assert (prepared.image, prepared.width, prepared.height) == (IMAGE, 256, 256)
        assert (params, request_id) == (job.params, f"{job.id}-1")  # one Triton request id per attempt
        assert timeout_s is not None and 0 < timeout_s <= 600
    run(scenario)


def test_a_model_error_fails_the_job(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer(error=ModelFailedError("the model ran out of memory"))
        w = worker(fake)
        job = await claimed(store, w)
        await w.run(job)
        done = await stored(store, job.id)
        assert done.status is JobStatus.failed
        assert (done.error_status, done.message) == (502, "the model ran out of memory")
        assert (done.result, done.worker) == (None, None) and done.finished_at is not None
        assert await store.load_input(job.id) is None
    run(scenario)


def test_an_unexpected_error_fails_the_job_as_internal(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        w = worker(FakeRenderer(error=KeyError("boom")))
        job = await claimed(store, w)
        await w.run(job)
        done = await stored(store, job.id)
        assert (done.status, done.error_status, done.message) == (JobStatus.failed, 500, "internal error: KeyError")
    run(scenario)


def test_an_unavailable_model_puts_the_job_back_to_wait(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        w = worker(FakeRenderer(error=ModelUnavailableError("the model is not ready")))
        job = await claimed(store, w)
        before = time.time()
        await w.run(job)
        waiting = await stored(store, job.id)
        assert waiting.status is JobStatus.queued
        assert waiting.message == "waiting to retry: the model is not ready"
        assert waiting.run_after > before and waiting.run_after > time.time()
        assert (waiting.worker, waiting.lease_until, waiting.finished_at, waiting.attempts) == (None, None, None, 1)
        assert (waiting.waiting_for_model, waiting.model_waits, waiting.lost_workers) == (True, 1, 0)
        assert await store.load_input(job.id) == IMAGE  # it runs again: the input stays
        assert await w.claim() is None  # not before its run_after
    run(scenario)


def test_an_unavailable_model_past_the_deadline_fails_the_job(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        w = worker(FakeRenderer(error=ModelUnavailableError("the model is not ready")))
        job = await claimed(store, w, deadline_s=1.5)  # the first retry waits 2 s: past the deadline
        await w.run(job)
        done = await stored(store, job.id)
        assert (done.status, done.error_status) == (JobStatus.failed, 503)
        assert done.message.startswith("the model is not ready (gave up after waiting")
    run(scenario)


def test_cancel_stops_the_render_and_names_the_steps_done(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer(steps=2, total=10, hold_progress=True, block=True)
        w = worker(fake)
        job = await claimed(store, w)
        running = asyncio.create_task(w.run(job))
        await fake.steps_taken.wait()  # the worker has step 2 in hand
        _, changed = await store.mutate(job.id, lambda j: j.request_cancel())
        assert changed
        await running
        assert fake.render_cancelled.is_set() and fake.progress_closed.is_set()
        done = await stored(store, job.id)
        assert done.status is JobStatus.cancelled
        assert done.message == "cancelled by the caller after 2 of 10 denoising steps"
        assert (done.worker, done.result, done.error_status) == (None, None, None)
        assert done.progress == JobProgress(step=2, total=10)
        assert await store.load_input(job.id) is None
        assert fake.returned == [] and fake.discarded == []
    run(scenario)


def test_a_lost_lease_stops_the_render_and_leaves_the_job_to_its_new_worker(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer(steps=1, hold_progress=True, block=True)
        w = worker(fake)
        job = await claimed(store, w)
        running = asyncio.create_task(w.run(job))
        await fake.render_started.wait()
        taken, _ = await store.mutate(job.id, take_over)
        await running  # the next heartbeat finds the job held by another worker
        assert fake.render_cancelled.is_set() and fake.progress_closed.is_set()
        assert await store.get(job.id) == taken  # not finished, not renewed: "other" owns it
        assert taken is not None and taken.held_by("other", 2) and taken.attempts == 2
        assert await store.load_input(job.id) == IMAGE  # the new worker needs the input
        assert fake.returned == [] and fake.discarded == []
    run(scenario)


def test_a_video_made_after_the_lease_was_lost_is_discarded(run) -> None:
    """The worker learns it lost the job only at its next renewal, and by then the render has
    made a video: it must not finish the job, and the video is nobody's, so it is discarded.
    (The job is taken before ``run`` and the render returns at once, so the first renewal sees
    both the finished render and the lost lease: no race with the heartbeat.)"""
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer(ack=False)
        w = worker(fake)
        job = await claimed(store, w)
        taken, _ = await store.mutate(job.id, take_over)
        await w.run(job)
        assert await store.get(job.id) == taken  # still "other"'s, untouched
        assert await store.load_input(job.id) == IMAGE
        assert fake.returned == [RESULT]
        assert fake.discarded == [RESULT]  # every video made is pointed to by a job or discarded
    run(scenario)


def test_a_video_made_as_the_cancel_came_is_not_leaked(run) -> None:
    """The caller cancels as the render ends: the lifecycle allows cancelling -> succeeded ("it
    ended before the cancel reached the model"). Either the job succeeds with the video, or it is
    cancelled and the video discarded; never cancelled with the video left on disk."""
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer(ack=False)
        w = worker(fake)
        job = await claimed(store, w)
        await store.mutate(job.id, lambda j: j.request_cancel())
        await w.run(job)
        done = await stored(store, job.id)
        assert fake.returned == [RESULT]
        assert done.status in (JobStatus.succeeded, JobStatus.cancelled)
        if done.status is JobStatus.succeeded:
            assert done.result == RESULT and fake.discarded == []
        else:
            assert done.result is None and fake.discarded == [RESULT]
        assert await store.load_input(job.id) is None
    run(scenario)


def test_shutdown_puts_the_job_back_without_using_an_attempt(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer(steps=1, hold_progress=True, block=True)
        w = worker(fake)
        job = await claimed(store, w)
        running = asyncio.create_task(w.run(job))
        await fake.render_started.wait()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await fake.render_cancelled.wait()
        back = await stored(store, job.id)
        assert back.status is JobStatus.queued and (back.attempts, back.lost_workers) == (1, 0)
        assert (back.worker, back.lease_until, back.message) == (None, None, "queued again: its gateway stopped")
        assert await store.load_input(job.id) == IMAGE
    run(scenario)


def test_without_progress_the_job_still_succeeds(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer(ack=False)
        w = worker(fake)
        job = await claimed(store, w)
        await w.run(job)
        done = await stored(store, job.id)
        assert done.status is JobStatus.succeeded and done.result == RESULT and done.progress is None
        assert await store.load_input(job.id) is None
        assert fake.progress_closed.is_set() and len(fake.calls) == 1
    run(scenario)


def test_a_job_past_its_deadline_or_without_input_fails_before_the_model(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer()
        w = worker(fake)
        job = await claimed(store, w)
        late = job.model_copy(update={"deadline_at": time.time() - 1})
        await w.run(late)
        done = await stored(store, job.id)
        assert (done.status, done.error_status) == (JobStatus.failed, 504)
        assert done.message.startswith("the job did not finish within")

        second = await claimed(store, w)
        await store.drop_input(second.id)
        await w.run(second)
        missing = await stored(store, second.id)
        assert (missing.status, missing.error_status) == (JobStatus.failed, 500)
        assert "input image is missing" in missing.message
        assert fake.calls == []
    run(scenario)


def test_a_cached_video_does_not_wait_for_steps_that_never_come(run, monkeypatch) -> None:
    # A cache hit sends nothing to Triton, so its progress stream stays open with no step: the
    # worker must finish the job at once, not wait on the stream (here for longer than the
    # scenario's bound) while its lease runs out.
    monkeypatch.setattr(workers, "PROGRESS_DRAIN_S", 10 * BOUND_S)

    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer(hold_progress=True, result=RESULT.model_copy(update={"cached": True}))
        w = worker(fake)
        job = await claimed(store, w)
        await w.run(job)
        done = await stored(store, job.id)
        assert done.status is JobStatus.succeeded and done.result is not None and done.result.cached
    run(scenario)


def test_a_stale_claim_of_the_same_worker_id_cannot_finish_the_job(run) -> None:
    """The workers of one gateway share an id: the fencing token, not the id, tells a stale claim
    (its lease lapsed, the job claimed again) from the live one. The stale one's video is discarded."""
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake = FakeRenderer(ack=False)
        w = worker(fake)
        job = await claimed(store, w)
        again, _ = await store.mutate(job.id, lambda j: j.requeue("lapsed", lost_worker=True).claim("w1", 30))
        assert again is not None and again.held_by("w1", again.generation) and again.generation == 2
        await w.run(job)  # the stale claim (generation 1) runs to the end
        assert await store.get(job.id) == again  # neither finished nor renewed by the stale claim
        assert fake.returned == [RESULT] and fake.discarded == [RESULT]
    run(scenario)


async def store_lost_while_rendering(store: FlakyStore, worker: Callable[[FakeRenderer], JobWorker],
                                     ) -> tuple[FakeRenderer, Job, asyncio.Task[None]]:
    """A claimed job whose render has started (and blocks), the store gone away just then."""
    fake = FakeRenderer(steps=1, hold_progress=True, block=True)
    w = worker(fake)
    job = await claimed(store, w)
    running = asyncio.create_task(w.run(job))
    await fake.render_started.wait()
    store.away = True
    return fake, job, running


def test_a_store_outage_longer_than_the_lease_cancels_the_render_and_hands_the_job_back(run) -> None:
    async def scenario(store: FlakyStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake, job, running = await store_lost_while_rendering(store, worker)
        # Renewals fail until the lease is nearly over; then the render is stopped, not abandoned.
        await fake.render_cancelled.wait()
        assert not running.done()  # it waits for the store to hand the job back
        store.away = False
        await running
        back = await stored(store, job.id)
        assert back.status is JobStatus.queued and back.message == "queued again: the job store was away"
        assert (back.attempts, back.lost_workers, back.worker) == (1, 0, None)  # no lost worker counted
        assert fake.returned == [] and fake.discarded == [] and fake.progress_closed.is_set()
        assert await store.load_input(job.id) == IMAGE
    run(scenario)


def test_a_store_outage_within_the_lease_does_not_stop_the_render(run) -> None:
    async def scenario(store: FlakyStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        fake, job, running = await store_lost_while_rendering(store, worker)
        await store.failed.wait()  # one renewal failed
        store.away = False
        fake.release.set()
        await running
        done = await stored(store, job.id)
        assert done.status is JobStatus.succeeded and done.result == RESULT
        assert not fake.render_cancelled.is_set() and fake.discarded == []
    run(scenario)


def test_a_video_made_while_the_store_is_away_is_recorded_when_it_returns(run) -> None:
    async def scenario(store: FlakyStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        async def store_goes_away() -> None:
            store.away = True
        fake = FakeRenderer(ack=False, before_return=store_goes_away)
        w = worker(fake)
        job = await claimed(store, w)
        running = asyncio.create_task(w.run(job))
        await store.failed.wait()  # the first write after the video failed
        store.away = False
        await running
        done = await stored(store, job.id)
        assert done.status is JobStatus.succeeded and done.result == RESULT and fake.discarded == []
    run(scenario)


def test_the_model_watch_resumes_waiting_jobs_once_the_model_is_ready(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        w = worker(FakeRenderer(error=ModelUnavailableError("Triton is away")))
        job = await claimed(store, w)
        await w.run(job)
        waiting = await stored(store, job.id)
        assert waiting.waiting_for_model and waiting.run_after > time.time()
        ready = False

        async def model_ready() -> bool:
            return ready
        wake = Wake()
        watch = ModelWatch(w.settings, store, model_ready, wake)
        assert await watch.resume_waiting() == 0  # the model is still away: the backoff stands
        assert (await stored(store, job.id)).run_after == waiting.run_after
        ready = True
        assert await watch.resume_waiting() == 1
        resumed = await stored(store, job.id)
        assert resumed.status is JobStatus.queued and resumed.run_after <= time.time()
        assert resumed.events == waiting.events  # no event: nothing a caller sees moved
        assert wake._event.is_set()  # a worker starts it at once
        again = await w.claim()
        assert again is not None and again.id == job.id and (again.attempts, again.lost_workers) == (2, 0)
        assert await watch.resume_waiting() == 0
    run(scenario)


def test_a_dead_model_process_puts_the_job_back_as_a_lost_worker_until_it_gives_up(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        w = worker(FakeRenderer(error=ModelProcessLostError("the model's process stopped (request x)")))
        job = await submit(store)
        for attempt in range(1, w.settings.job_max_attempts + 1):
            await store.mutate(job.id, lambda j: j.resume())  # due now, as the model watch makes it
            claimed_job = await w.claim()
            assert claimed_job is not None and claimed_job.attempts == attempt
            await w.run(claimed_job)
            after = await stored(store, job.id)
            if attempt < w.settings.job_max_attempts:
                assert after.status is JobStatus.queued and after.waiting_for_model, after
                assert after.lost_workers == attempt
        assert after.status is JobStatus.failed and after.error_status == 502
        assert f"died {w.settings.job_max_attempts} times" in after.message
    run(scenario)


def test_a_job_waiting_for_the_model_is_not_tried_while_the_watch_sees_it_away(run) -> None:
    async def scenario(store: SQLiteJobStore, worker: Callable[[FakeRenderer], JobWorker]) -> None:
        w = worker(FakeRenderer(error=ModelUnavailableError("Triton is away")))
        job = await claimed(store, w)
        await w.run(job)
        await store.mutate(job.id, lambda j: j.model_copy(update={"run_after": time.time()}))  # backoff over
        ready = False
        w.model_ready = lambda: ready
        assert await w.claim() is None
        ready = True
        again = await w.claim()
        assert again is not None and again.attempts == 2
    run(scenario)
