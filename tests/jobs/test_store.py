"""The job stores alone (SQLite file, real redis-server): the same behaviour from both."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from gateway import metrics
from gateway.config import Settings
from gateway.generation.cache import CacheEntry
from gateway.generation.progress import Progress
from gateway.generation.results import VideoResult
from gateway.jobs.reaper import LeaseReaper
from gateway.jobs.records import IdempotencyConflictError, Job
from gateway.jobs.redis_store import RedisJobStore
from gateway.jobs.sqlite_store import SQLiteJobStore
from gateway.jobs.store import IdempotencyKey, JobStore
from gateway.schemas import JobStatus, VideoParams

Scenario = Callable[[JobStore], Awaitable[None]]


@pytest.fixture(params=["sqlite", "redis"])
def run(request: pytest.FixtureRequest, tmp_path) -> Callable[[Scenario], None]:
    """Runs a scenario against a fresh store, opened inside the scenario's event loop."""
    url = request.getfixturevalue("new_redis_url")() if request.param == "redis" else None

    def run_scenario(scenario: Scenario) -> None:
        async def main() -> None:
            redis = aioredis.from_url(url) if url else None
            store: JobStore = RedisJobStore(redis) if redis else SQLiteJobStore(tmp_path / "jobs.sqlite3")
            try:
                await scenario(store)
            finally:
                await store.close()
                if redis is not None:
                    await redis.aclose()
        asyncio.run(main())
    return run_scenario


def new_job(owner: str = "alice", created_at: float | None = None) -> Job:
    now = created_at or time.time()
    return Job(owner=owner, params=VideoParams(prompt="a cat"), width=256, height=256, base_url="http://gw",
               created_at=now, run_after=now, deadline_at=now + 60)


def test_insert_get_and_the_queue_index(run) -> None:
    async def scenario(store: JobStore) -> None:
        first, second = new_job(created_at=100.0), new_job(owner="bob", created_at=101.0)
        for job in (first, second):
            assert (await store.insert(job, b"png", None, 60))[1] is True
        # Inserting records the job's first event, counted on the job.
        assert (await store.get(first.id)) == first.model_copy(update={"events": 1})
        assert await store.load_input(first.id) == b"png"
        assert await store.due("queued", time.time()) == [first.id, second.id]
        assert (await store.count_queued(), await store.count_queued("alice")) == (2, 1)

        claimed, changed = await store.mutate(first.id, lambda j: j.claim("w1", lease_s=50.0, now=0.0))
        assert changed and claimed is not None
        assert await store.due("queued", time.time()) == [second.id]
        assert await store.due("running", 60.0) == [first.id]
        assert await store.mutate(first.id, lambda j: None) == (claimed, False)

        done, _ = await store.mutate(first.id, lambda j: j.fail(500, "broke", now=200.0))
        assert await store.due("running", 1e12) == [] and await store.due("finished", 200.0) == [first.id]
        await store.delete(first.id)
        assert await store.get(first.id) is None and await store.load_input(first.id) is None
        assert await store.mutate("missing", lambda j: j) == (None, False)
    run(scenario)


def test_changes_record_events_in_order_in_the_same_write(run) -> None:
    async def scenario(store: JobStore) -> None:
        job = new_job()
        await store.insert(job, b"", None, 60)
        await store.mutate(job.id, lambda j: j.claim("w1", lease_s=30))
        for step in (1, 2, 2, 3):  # a renewal with the same step records nothing
            await store.mutate(job.id, lambda j, step=step: j.renew(30, Progress(step, 3)))
        await store.mutate(job.id, lambda j: j.renew(30))  # a lease renewal alone records nothing
        await store.mutate(job.id, lambda j: j.request_cancel())
        stored, _ = await store.mutate(job.id, lambda j: j.cancel("stopped"))
        events = await store.events_after(job.id, 0)
        assert [(e.id, e.type, e.step) for e in events] == [
            (1, "queued", None), (2, "running", None), (3, "running", 1), (4, "running", 2), (5, "running", 3),
            (6, "cancelling", 3), (7, "cancelled", None)]
        assert stored is not None and stored.events == 7
        assert [e.id for e in await store.events_after(job.id, 5)] == [6, 7]
        assert [e.id for e in await store.events_after(job.id, 2, limit=2)] == [3, 4]
        # Out of range: a negative id is the start (not the list's end), a huge one is past the end
        # (not an overflow of SQLite's 64-bit integers).
        assert [e.id for e in await store.events_after(job.id, -1)] == [1, 2, 3, 4, 5, 6, 7]
        assert await store.events_after(job.id, 99999999999999999999999) == []
        await store.delete(job.id)
        assert await store.events_after(job.id, 0) == []
    run(scenario)


def test_the_deadline_and_model_wait_indexes_hold_only_the_jobs_they_name(run) -> None:
    async def scenario(store: JobStore) -> None:
        plain, timed, waiting = new_job(created_at=100.0), new_job(created_at=101.0), new_job(created_at=102.0)
        timed = timed.model_copy(update={"cancel_at": 160.0})
        for job in (plain, timed, waiting):
            await store.insert(job, b"png", None, 60)
        await store.mutate(waiting.id, lambda j: j.claim("w1", lease_s=50.0, now=103.0).wait_for_model(
            "the model is not ready", 130.0, now=104.0))
        assert await store.due("deadline", 200.0) == [timed.id]
        assert [job.id for job in await store.jobs_in("model_wait", math.inf, 10)] == [waiting.id]
        await store.mutate(timed.id, lambda j: j.claim("w1", lease_s=50.0, now=105.0))
        assert await store.due("deadline", 200.0) == []
        await store.delete(waiting.id)
        assert await store.jobs_in("model_wait", math.inf, 10) == []
    run(scenario)


def test_jobs_of_an_earlier_version_join_the_new_indexes_and_its_stale_entries_go(run) -> None:
    """A gateway of the version before the deadline index wrote no entry to it, and claimed or
    deleted jobs without taking theirs out; the reaper of this version mends both."""
    async def scenario(store: JobStore) -> None:
        reaper = LeaseReaper(Settings(api_token="t" * 20), store, asyncio.Event())
        unindexed, claimed = (new_job(created_at=100.0).model_copy(update={"cancel_at": at}) for at in (150.0, 160.0))
        for job in (unindexed, claimed):
            await store.insert(job, b"png", None, 60)
        await store.set_index("deadline", unindexed.id, None)  # as the earlier version wrote it
        await reaper.index_earlier_jobs()
        assert await store.due("deadline", 200.0) == [unindexed.id, claimed.id]
        await store.mutate(claimed.id, lambda j: j.claim("w1", lease_s=50.0, now=105.0))
        await store.set_index("deadline", claimed.id, 160.0)  # the earlier version's claim left it
        await reaper.cancel_overdue_jobs(now=200.0)
        assert await store.due("deadline", 300.0) == []
        statuses = [job.status for job in [await store.get(unindexed.id), await store.get(claimed.id)] if job]
        assert statuses == [JobStatus.cancelled, JobStatus.running]
    run(scenario)


def test_an_sqlite_file_from_before_an_index_gains_it_with_its_queued_jobs(tmp_path) -> None:
    path = tmp_path / "jobs.sqlite3"
    earlier = new_job(created_at=100.0).model_copy(update={"cancel_at": 160.0})
    with sqlite3.connect(path) as db:  # the jobs table as the release before the index wrote it
        db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at REAL NOT NULL, "
                   "doc TEXT NOT NULL, queued_at REAL, running_at REAL, webhook_at REAL, finished_at REAL)")
        db.execute("INSERT INTO jobs (id, owner, created_at, doc, queued_at) VALUES (?, ?, ?, ?, ?)",
                   (earlier.id, earlier.owner, earlier.created_at, earlier.model_dump_json(), earlier.run_after))
    db.close()

    async def scenario() -> None:
        store = SQLiteJobStore(path)
        try:
            await LeaseReaper(Settings(api_token="t" * 20), store, asyncio.Event()).index_earlier_jobs()
            later = new_job(created_at=101.0).model_copy(update={"cancel_at": 170.0})
            await store.insert(later, b"png", None, 60)
            assert await store.due("deadline", 200.0) == [earlier.id, later.id]
        finally:
            await store.close()
    asyncio.run(scenario())


def test_a_change_that_ends_a_job_is_counted_once(run) -> None:
    def ended(state: str) -> float:
        return metrics.REGISTRY.get_sample_value("i2v_jobs_ended_total", {"state": state}) or 0.0

    async def scenario(store: JobStore) -> None:
        job = new_job()
        await store.insert(job, b"png", None, 60)
        before = ended("cancelled")
        await store.mutate(job.id, lambda j: j.cancel("cancelled by the caller"))
        _, changed = await store.mutate(job.id, lambda j: j.model_copy(update={"message": "a later write"}))
        assert changed and ended("cancelled") == before + 1  # a write to an ended job is no new end
    run(scenario)


def test_list_for_owner_is_newest_first_and_paged(run) -> None:
    async def scenario(store: JobStore) -> None:
        jobs = [new_job(created_at=1000.0 + i) for i in range(5)]
        for job in jobs:
            await store.insert(job, b"", None, 60)
        await store.insert(new_job(owner="bob"), b"", None, 60)
        page = await store.list_for_owner("alice", 1, 2)
        assert [j.id for j in page] == [jobs[3].id, jobs[2].id]
    run(scenario)


def test_idempotency_key(run) -> None:
    async def scenario(store: JobStore) -> None:
        key = IdempotencyKey("alice", "k1", "hash-a")
        first, created = await store.insert(new_job(), b"", key, 60)
        again, created_again = await store.insert(new_job(), b"", key, 60)
        assert created and not created_again and again.id == first.id
        with pytest.raises(IdempotencyConflictError):
            await store.insert(new_job(), b"", IdempotencyKey("alice", "k1", "hash-b"), 60)
        # Keys are per owner.
        assert (await store.insert(new_job("bob"), b"", IdempotencyKey("bob", "k1", "hash-b"), 60))[1]
    run(scenario)


def test_concurrent_claims_give_a_job_to_one_worker(run) -> None:
    async def scenario(store: JobStore) -> None:
        job = new_job()
        await store.insert(job, b"", None, 60)

        def claim(worker: str):
            return lambda j: None if j.status is not JobStatus.queued else j.claim(worker, lease_s=30)
        outcomes = await asyncio.gather(*(store.mutate(job.id, claim(f"w{i}")) for i in range(8)))
        assert sum(changed for _, changed in outcomes) == 1
    run(scenario)


def test_cache_is_lru_bounded_by_bytes(run) -> None:
    def entry(key: str, size: int, used: float) -> CacheEntry:
        video = VideoResult(video_file=f"{key}.mp4", seed=1, width=8, height=8, num_frames=8, fps=8,
                            inference_time=0.1)
        return CacheEntry(key=key, video=video, size_bytes=size, created_at=used, last_used=used)

    async def scenario(store: JobStore) -> None:
        assert await store.cache_put(entry("a", 40, 1.0), 100) == []
        assert await store.cache_put(entry("b", 40, 2.0), 100) == []
        assert (await store.cache_get("a")) is not None  # now the most recently used
        assert await store.cache_put(entry("c", 40, 3.0), 100) == ["b"]
        assert await store.cache_get("b") is None
        assert await store.cache_older_than(2.5) == ["a"]
        await store.cache_drop("a")
        assert await store.cache_get("a") is None
    run(scenario)
