"""The job lifecycle alone (records.py, reaper.expire): every legal move, every illegal one, the
fields each move sets and the indexes a job is in. Pure: no store, no event loop, no clock."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import pytest

from gateway.config import Settings
from gateway.generation.progress import Progress
from gateway.generation.results import VideoResult
from gateway.jobs.loops import Wake
from gateway.jobs.reaper import LeaseReaper
from gateway.jobs.records import (
    ACTIVE,
    TRANSITIONS,
    IllegalTransitionError,
    Job,
    JobProgress,
    Webhook,
    WebhookState,
)
from gateway.schemas import JobStatus, VideoParams

CREATED = 1_000.0
NOW = 2_000.0  # the time of the move under test; every earlier move happens at CREATED + 1
LEASE_S = 30.0
RESULT = VideoResult(video_file="v.mp4", seed=7, width=256, height=256, num_frames=16, fps=8, inference_time=1.5)

Move = Callable[[Job, float], Job]
# The method that makes each move, by the status it moves to.
MOVES: dict[JobStatus, Move] = {
    JobStatus.running: lambda job, now: job.claim("w1", LEASE_S, now=now),
    JobStatus.cancelling: lambda job, now: job.request_cancel(now=now),
    JobStatus.queued: lambda job, now: job.requeue("queued again", now=now),
    JobStatus.succeeded: lambda job, now: job.succeed(RESULT, now=now),
    JobStatus.failed: lambda job, now: job.fail(502, "the model broke", now=now),
    JobStatus.cancelled: lambda job, now: job.cancel("cancelled by the caller", now=now),
}
LEGAL = [(source, target) for source in JobStatus for target in sorted(TRANSITIONS[source], key=list(JobStatus).index)]
ILLEGAL = [(source, target) for source in JobStatus for target in JobStatus if target not in TRANSITIONS[source]]


def new_job(webhook: bool = False) -> Job:
    return Job(owner="alice", params=VideoParams(prompt="a cat"), base_url="http://gw", width=256, height=256,
               created_at=CREATED, updated_at=CREATED, run_after=CREATED, deadline_at=CREATED + 3600,
               webhook=Webhook(url="http://hook.example/cb") if webhook else None)


def path_to(status: JobStatus) -> list[JobStatus]:
    """The shortest run of legal moves from a new (queued) job to ``status``, from TRANSITIONS."""
    paths: dict[JobStatus, list[JobStatus]] = {JobStatus.queued: []}
    todo = deque([JobStatus.queued])
    while todo:
        here = todo.popleft()
        for there in sorted(TRANSITIONS[here], key=list(JobStatus).index):
            if there not in paths:
                paths[there] = [*paths[here], there]
                todo.append(there)
    return paths[status]


def reach(status: JobStatus, webhook: bool = False) -> Job:
    job = new_job(webhook)
    for step in path_to(status):
        job = MOVES[step](job, CREATED + 1)
    assert job.status is status
    return job


def test_the_tables_cover_every_status() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    assert set(MOVES) == set(JobStatus)
    assert {target for targets in TRANSITIONS.values() for target in targets} <= set(JobStatus)
    for status in JobStatus:
        assert path_to(status)[-1:] in ([status], [])  # every status is reachable from queued
        assert (TRANSITIONS[status] == frozenset()) == status.final  # only the final statuses end it
    assert set(ACTIVE) == {JobStatus.running, JobStatus.cancelling}
    assert len(LEGAL) + len(ILLEGAL) == len(JobStatus) ** 2


@pytest.mark.parametrize("webhook", [False, True], ids=["no-webhook", "webhook"])
@pytest.mark.parametrize(("source", "target"), LEGAL, ids=[f"{s.value}->{t.value}" for s, t in LEGAL])
def test_every_legal_move(source: JobStatus, target: JobStatus, webhook: bool) -> None:
    before = reach(source, webhook)
    after = MOVES[target](before, NOW)
    assert after.status is target and after.updated_at == NOW
    assert before.status is source  # moves return a new job; the old one is untouched
    assert (after.id, after.owner, after.params, after.created_at) == (before.id, before.owner, before.params,
                                                                       before.created_at)
    if target is JobStatus.running:
        assert (after.worker, after.lease_until) == ("w1", NOW + LEASE_S)
        assert after.attempts == before.attempts + 1
        assert after.generation == before.generation + 1  # the fencing token moves on every claim
        assert after.started_at == (before.started_at or NOW)  # a second start keeps the first
        assert (after.message, after.progress) == ("running", None)
    elif target is JobStatus.cancelling:
        assert (after.worker, after.lease_until, after.attempts) == (before.worker, before.lease_until,
                                                                     before.attempts)
        assert after.message == "cancelling"
    elif target is JobStatus.queued:
        assert (after.worker, after.lease_until) == (None, None)
        assert (after.run_after, after.attempts, after.message) == (NOW, before.attempts, "queued again")
        assert (after.lost_workers, after.generation) == (before.lost_workers, before.generation)
        assert after.finished_at is None
    else:  # an end
        assert target.final
        assert (after.finished_at, after.worker, after.lease_until) == (NOW, None, None)
        if webhook:
            assert after.webhook is not None
            assert (after.webhook.state, after.webhook.next_at) == (WebhookState.pending, NOW)
        else:
            assert after.webhook is None
        if target is JobStatus.succeeded:
            assert (after.result, after.error_status, after.message) == (RESULT, None, "video generated")
        elif target is JobStatus.failed:
            assert (after.result, after.error_status, after.message) == (None, 502, "the model broke")
        else:
            assert (after.result, after.error_status, after.message) == (None, None, "cancelled by the caller")


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=[f"{s.value}->{t.value}" for s, t in ILLEGAL])
def test_every_illegal_move_raises(source: JobStatus, target: JobStatus) -> None:
    job = reach(source)
    with pytest.raises(IllegalTransitionError, match=f"{source.value} -> {target.value}"):
        MOVES[target](job, NOW)
    assert job.status is source


def test_requeue_sets_run_after_and_counts_lost_workers_only() -> None:
    running = reach(JobStatus.running)
    assert (running.attempts, running.lost_workers) == (1, 0)
    later = running.requeue("waiting to retry", run_after=NOW + 8, now=NOW)
    assert (later.run_after, later.attempts, later.lost_workers, later.worker, later.lease_until) == (
        NOW + 8, 1, 0, None, None)
    lost = running.requeue("its gateway stopped", lost_worker=True, now=NOW)
    assert (lost.status, lost.attempts, lost.lost_workers, lost.run_after) == (JobStatus.queued, 1, 1, NOW)
    again = lost.claim("w2", LEASE_S, now=NOW)
    assert (again.attempts, again.lost_workers, again.generation) == (2, 1, 2)


def test_waiting_for_the_model_uses_no_attempt_and_resumes_early() -> None:
    running = reach(JobStatus.running)
    waiting = running.wait_for_model("the model is not ready", NOW + 30, now=NOW)
    assert waiting.status is JobStatus.queued and waiting.message == "waiting to retry: the model is not ready"
    assert (waiting.run_after, waiting.model_waits, waiting.waiting_for_model) == (NOW + 30, 1, True)
    assert (waiting.attempts, waiting.lost_workers) == (1, 0)
    resumed = waiting.resume(now=NOW + 2)
    assert resumed is not None and (resumed.status, resumed.run_after) == (JobStatus.queued, NOW + 2)
    assert resumed.resume(now=NOW + 3) is None  # already due
    assert new_job().model_copy(update={"run_after": NOW + 30}).resume(now=NOW) is None  # not waiting for the model
    assert running.resume(now=NOW) is None  # only a queued job
    restarted = resumed.claim("w2", LEASE_S, now=NOW + 2)
    assert (restarted.waiting_for_model, restarted.model_waits, restarted.attempts) == (False, 1, 2)


def test_records_from_before_the_fencing_token_load() -> None:
    old = new_job().model_dump(exclude={"lost_workers", "generation", "model_waits", "waiting_for_model"})
    loaded = Job.model_validate(old)
    assert (loaded.lost_workers, loaded.generation, loaded.model_waits, loaded.waiting_for_model) == (0, 0, 0, False)


def test_a_new_start_clears_the_last_progress_and_ends_keep_it() -> None:
    running = reach(JobStatus.running).renew(LEASE_S, Progress(3, 10), now=NOW)
    assert running.progress == JobProgress(step=3, total=10)
    assert running.succeed(RESULT, now=NOW).progress == JobProgress(step=3, total=10)
    assert running.requeue("again", now=NOW).claim("w2", LEASE_S, now=NOW).progress is None


def test_renew_moves_the_lease_and_records_started_progress_only() -> None:
    running = reach(JobStatus.running)
    renewed = running.renew(LEASE_S, now=NOW)
    assert (renewed.status, renewed.lease_until, renewed.updated_at, renewed.progress) == (
        JobStatus.running, NOW + LEASE_S, NOW, None)
    assert running.renew(LEASE_S, Progress(0, 0), now=NOW).progress is None  # the acknowledgement is no step
    assert running.renew(LEASE_S, Progress(4, 10), now=NOW).progress == JobProgress(step=4, total=10)
    cancelling = running.request_cancel(now=NOW).renew(LEASE_S, Progress(5, 10), now=NOW + 1)
    assert (cancelling.status, cancelling.lease_until) == (JobStatus.cancelling, NOW + 1 + LEASE_S)


@pytest.mark.parametrize("status", list(JobStatus), ids=[s.value for s in JobStatus])
def test_held_by(status: JobStatus) -> None:
    job = reach(status)
    generation = 1 if status is not JobStatus.queued else 0
    assert job.held_by("w1", generation) is (status in ACTIVE)
    assert job.held_by("w2", generation) is False


def test_held_by_is_fenced_by_the_claim() -> None:
    """A worker whose lease lapsed and whose job was claimed again, even under the same worker id
    (the workers of one gateway share it), no longer holds the job: none of its writes apply."""
    first = reach(JobStatus.running)
    again = first.requeue("lease lapsed", lost_worker=True, now=NOW).claim("w1", LEASE_S, now=NOW)
    assert again.held_by("w1", again.generation) and again.generation == first.generation + 1
    assert not again.held_by("w1", first.generation)
    assert not again.request_cancel(now=NOW).held_by("w1", first.generation)


@pytest.mark.parametrize("status", list(JobStatus), ids=[s.value for s in JobStatus])
def test_index_scores(status: JobStatus) -> None:
    job = reach(status)
    scores = job.index_scores()
    assert scores["queued"] == (job.run_after if status is JobStatus.queued else None)
    # cancelling is in the running index too: the reaper must find a cancelling job whose worker died
    assert scores["running"] == (job.lease_until if status in ACTIVE else None)
    assert scores["finished"] == (job.finished_at if status.final else None)
    assert scores["webhook"] is None and scores["deadline"] is None and scores["model_wait"] is None
    assert sum(scores[name] is not None for name in ("queued", "running", "finished")) == 1
    if status in ACTIVE:
        assert scores["running"] == CREATED + 1 + LEASE_S


def test_index_scores_for_the_webhook() -> None:
    ended = reach(JobStatus.running, webhook=True).succeed(RESULT, now=NOW)
    assert ended.index_scores()["webhook"] == NOW
    assert reach(JobStatus.running, webhook=True).index_scores()["webhook"] is None  # not due before the end
    assert ended.webhook is not None
    for state, due in [(WebhookState.delivering, NOW), (WebhookState.delivered, None), (WebhookState.failed, None)]:
        hook = ended.webhook.model_copy(update={"state": state})
        assert ended.model_copy(update={"webhook": hook}).index_scores()["webhook"] == due


def test_index_scores_for_the_reaper_and_the_model_watch() -> None:
    """Only queued jobs with a deadline, or waiting for the model, are in the indexes those two loops read."""
    queued = reach(JobStatus.queued).model_copy(update={"cancel_at": NOW + 5})
    assert queued.index_scores()["deadline"] == NOW + 5
    running = queued.claim("w1", LEASE_S, now=NOW)
    assert running.index_scores()["deadline"] is None  # a worker cancels a running job at its deadline
    waiting = running.wait_for_model("the model is not ready", NOW + 30, now=NOW)
    assert (waiting.index_scores()["model_wait"], waiting.index_scores()["deadline"]) == (NOW + 30, NOW + 5)
    resumed = waiting.resume(now=NOW + 1)
    assert resumed is not None and resumed.index_scores()["model_wait"] == NOW + 1
    assert resumed.claim("w1", LEASE_S, now=NOW + 1).index_scores()["model_wait"] is None


# --- the lease reaper's decision ---

MAX_ATTEMPTS = 3


@pytest.fixture
def reaper() -> LeaseReaper:
    settings = Settings(insecure_no_auth=True, job_lease_s=LEASE_S, job_max_attempts=MAX_ATTEMPTS)
    return LeaseReaper(settings, store=None, wake=Wake())  # type: ignore[arg-type] - expire needs no store


def started(times: int) -> Job:
    """A running job on its ``times``-th start, each earlier one lost to a worker, its lease
    ending at CREATED + 1 + LEASE_S."""
    job = new_job()
    for _ in range(times - 1):
        job = job.claim("lost", LEASE_S, now=CREATED + 1).requeue("again", lost_worker=True, now=CREATED + 1)
    job = job.claim("w1", LEASE_S, now=CREATED + 1)
    assert job.attempts == times and job.lost_workers == times - 1
    return job


LAPSED = CREATED + 1 + LEASE_S + 0.001


def test_reaper_requeues_a_running_job_with_a_lapsed_lease(reaper: LeaseReaper) -> None:
    for times in range(1, MAX_ATTEMPTS):
        expired = reaper.expire(started(times), LAPSED)
        assert expired is not None and expired.status is JobStatus.queued
        assert (expired.worker, expired.lease_until, expired.attempts) == (None, None, times)
        assert expired.lost_workers == times
        assert expired.run_after == LAPSED and "stopped" in expired.message


def test_reaper_fails_a_job_at_its_last_attempt(reaper: LeaseReaper) -> None:
    expired = reaper.expire(started(MAX_ATTEMPTS), LAPSED)
    assert expired is not None and expired.status is JobStatus.failed
    assert (expired.error_status, expired.finished_at, expired.worker) == (500, LAPSED, None)
    assert f"{MAX_ATTEMPTS} times" in expired.message and expired.lost_workers == MAX_ATTEMPTS


def test_reaper_counts_lost_workers_not_waits_for_the_model(reaper: LeaseReaper) -> None:
    """Many starts that ended waiting for the model (Triton away) and one lost worker: the job goes
    back to the queue, it is not failed for "stopping" more often than it did."""
    job = new_job()
    for _ in range(5):
        job = job.claim("w1", LEASE_S, now=CREATED + 1).wait_for_model("Triton away", CREATED + 1, now=CREATED + 1)
    job = job.claim("w1", LEASE_S, now=CREATED + 1)
    expired = reaper.expire(job, LAPSED)
    assert expired is not None and expired.status is JobStatus.queued, expired
    assert (expired.attempts, expired.lost_workers) == (6, 1)


def test_reaper_cancels_a_cancelling_job_with_a_lapsed_lease(reaper: LeaseReaper) -> None:
    expired = reaper.expire(started(MAX_ATTEMPTS).request_cancel(now=CREATED + 1), LAPSED)
    assert expired is not None and expired.status is JobStatus.cancelled
    assert (expired.finished_at, expired.worker, expired.error_status) == (LAPSED, None, None)


def test_reaper_leaves_a_live_lease_alone(reaper: LeaseReaper) -> None:
    running = started(1)
    lease_end = CREATED + 1 + LEASE_S
    assert reaper.expire(running, lease_end - 0.001) is None
    assert reaper.expire(running.request_cancel(now=CREATED + 1), lease_end - 0.001) is None
    assert reaper.expire(running, lease_end) is not None  # due at the lease's end, as the index says


@pytest.mark.parametrize("status", [s for s in JobStatus if s not in ACTIVE], ids=lambda s: s.value)
def test_reaper_ignores_jobs_no_worker_holds(reaper: LeaseReaper, status: JobStatus) -> None:
    assert reaper.expire(reach(status), 1e12) is None
