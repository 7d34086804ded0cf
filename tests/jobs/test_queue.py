"""The queue order, places and ETAs (queue.py), webhook event scheduling (records.Webhook) and
Cancel-After parsing: pure, no store, no event loop, no clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gateway.api.deps import parse_duration_s
from gateway.config import Settings
from gateway.errors import InvalidFieldError
from gateway.generation.progress import Progress
from gateway.generation.results import VideoResult
from gateway.jobs.queue import QueueSnapshot, fair_order
from gateway.jobs.records import PROGRESS_WEBHOOK_EVERY_S, Job, JobProgress, Webhook, WebhookState
from gateway.jobs.service import JobService
from gateway.jobs.sqlite_store import SQLiteJobStore
from gateway.schemas import JobStatus, VideoParams, WebhookEvent

T0 = 1_000.0
RESULT = VideoResult(video_file="v.mp4", seed=1, width=256, height=256, num_frames=8, fps=8, inference_time=1.0)


def job(owner: str, at: float, steps: int = 10, **fields) -> Job:
    return Job(owner=owner, params=VideoParams(prompt="p", steps=steps), base_url="http://x", width=256, height=256,
               created_at=T0 + at, updated_at=T0 + at, run_after=T0 + at, deadline_at=T0 + 9_999, **fields)


def running(owner: str, at: float, step: int, steps: int = 10) -> Job:
    claimed = job(owner, at, steps).claim("w", 30, now=T0 + at)
    return claimed.model_copy(update={"progress": JobProgress(step=step, total=steps)})


def ids(jobs: list[Job]) -> list[str]:
    return [j.owner + str(int(j.created_at - T0)) for j in jobs]


def test_keys_take_turns_and_a_key_with_nothing_running_goes_first() -> None:
    queued = [job("a", 1), job("a", 2), job("a", 3), job("b", 4), job("c", 5), job("b", 6)]
    assert ids(fair_order(queued, [])) == ["a1", "b4", "c5", "a2", "b6", "a3"]
    # With two of a's running, b and c catch up before a's next.
    assert ids(fair_order(queued, [running("a", 0, 1), running("a", 0, 1)])) == ["b4", "c5", "b6", "a1", "a2", "a3"]


def test_with_nothing_running_the_key_served_longest_ago_goes_first() -> None:
    # One worker: between jobs nothing runs, so the last turns decide, not the jobs' ages.
    queued = [job("a", 1), job("a", 2), job("b", 3)]
    assert ids(fair_order(queued, [], turns={"a": T0 + 9})) == ["b3", "a1", "a2"]
    assert ids(fair_order(queued, [], turns={"a": T0 + 9, "b": T0 + 10})) == ["a1", "b3", "a2"]


def test_a_job_waiting_to_retry_goes_behind_its_keys_due_ones() -> None:
    retry = job("a", 1).model_copy(update={"run_after": T0 + 50})
    assert ids(fair_order([retry, job("a", 2), job("b", 3)], [])) == ["a2", "b3", "a1"]


def test_places_and_etas_follow_the_running_jobs_pace() -> None:
    # One job running at 2 s a step, 4 of its 10 steps done; two 10-step jobs wait.
    now = T0 + 8
    first = running("a", 0, step=4)
    queued = [job("a", 1), job("b", 2)]
    snapshot = QueueSnapshot(queued, [first], fallback_s_per_step=None, now=now)
    assert snapshot.s_per_step == 2.0
    assert snapshot.place(first).eta_s == 12.0  # 6 steps left
    b_place = snapshot.place(queued[1])
    assert b_place.queue_position == 1 and b_place.eta_s == 12.0 + 20.0
    a_place = snapshot.place(queued[0])
    assert a_place.queue_position == 2 and a_place.eta_s == 12.0 + 20.0 + 20.0
    ended = queued[0].model_copy(update={"status": JobStatus.succeeded})
    assert snapshot.place(ended).queue_position is None and snapshot.place(ended).eta_s is None


def test_without_a_measured_pace_a_place_has_no_eta_until_one_is_known() -> None:
    queued = [job("a", 1)]
    assert QueueSnapshot(queued, [], fallback_s_per_step=None, now=T0 + 5).place(queued[0]).eta_s is None
    remembered = QueueSnapshot(queued, [], fallback_s_per_step=0.5, now=T0 + 5).place(queued[0])
    assert remembered.queue_position == 1 and remembered.eta_s == 5.0


def hooked(*events: WebhookEvent) -> Job:
    return job("a", 0, webhook=Webhook(url="http://hook", events=list(events)))


def test_start_is_due_on_the_first_claim_only() -> None:
    claimed = hooked(WebhookEvent.start, WebhookEvent.completed).claim("w", 30, now=T0 + 1)
    assert claimed.webhook is not None and claimed.webhook.due_event() is WebhookEvent.start
    again = claimed.model_copy(update={"webhook": claimed.webhook.model_copy(update={"due": None, "next_at": None})})
    requeued = again.requeue("lost", now=T0 + 2).claim("w", 30, now=T0 + 3)
    assert requeued.webhook is not None and requeued.webhook.due_event() is None
    assert hooked(WebhookEvent.completed).claim("w", 30, now=T0).webhook.due_event() is None  # type: ignore[union-attr]


def test_progress_is_due_at_most_every_two_seconds_and_completed_replaces_it() -> None:
    current = hooked(WebhookEvent.progress, WebhookEvent.completed).claim("w", 30, now=T0)
    due_at = []
    for tenth in range(1, 60):  # a step every 0.1 s for 6 s; each due message is sent at once
        now = T0 + tenth / 10
        current = current.renew(30, Progress(step=tenth, total=60), now=now)
        assert current.webhook is not None
        if current.webhook.due_event() is WebhookEvent.progress and current.webhook.next_at == now:
            due_at.append(now)
            current = current.model_copy(update={"webhook": current.webhook.model_copy(update={
                "due": None, "next_at": None, "state": WebhookState.delivered})})
    gaps = [later - earlier for earlier, later in itertools.pairwise(due_at)]
    assert len(due_at) == 3 and all(gap >= PROGRESS_WEBHOOK_EVERY_S - 1e-9 for gap in gaps), due_at
    current = current.renew(30, Progress(step=60, total=60), now=T0 + 9)
    ended = current.succeed(RESULT, now=T0 + 9)
    assert ended.webhook is not None and ended.webhook.due_event() is WebhookEvent.completed


def test_a_record_from_before_the_filter_still_delivers_its_completed_message() -> None:
    legacy = Webhook(url="http://hook", state=WebhookState.pending, next_at=T0)
    assert legacy.events == [WebhookEvent.completed] and legacy.due_event() is WebhookEvent.completed


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("90s", 90.0), ("1.5m", 90.0), ("1h30m", 5400.0), ("500ms", 0.5), ("2m5s", 125.0)])
def test_cancel_after_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 s", "-1", "0", "0s", "25h", "1h-5m", "nan", "inf", "5d"])
def test_bad_cancel_after_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidFieldError, match="Cancel-After"):
        parse_duration_s(text)


def test_waiting_streams_share_a_recent_snapshot_and_a_newly_queued_job_gets_a_fresh_one(tmp_path) -> None:
    async def scenario() -> None:
        store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        service = JobService(Settings(api_token="t" * 20), store, generation=None)  # type: ignore[arg-type]
        try:
            first = job("alice", 0)
            await store.insert(first, b"png", None, 60)
            shared = await service.snapshot(max_age_s=60)
            assert await service.snapshot(max_age_s=60) is shared  # one read serves every stream
            assert await service.snapshot() is not shared  # a plain look reads the queue
            later = job("bob", 1)
            await store.insert(later, b"png", None, 60)
            assert (await service.place(later, max_age_s=60)).queue_position == 2  # not in the shared one
        finally:
            await store.close()
    asyncio.run(scenario())
