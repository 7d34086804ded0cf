"""Unit tests of gateway/tenants with the SQLite store on a real file: secrets are stored hashed,
rotation and revocation, usage sums, quota periods and their resets, a key's own limits."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from gateway import metrics
from gateway.config import Settings
from gateway.edge.fair_queue import FairQueue
from gateway.errors import QuotaExceededError, RateLimitedError, UnauthorizedError
from gateway.jobs.sqlite_store import SQLiteJobStore
from gateway.tenants.records import KeyLimits, KeyQuotas, Scope
from gateway.tenants.schemas import KeyCreate, KeyUpdate
from gateway.tenants.service import KeyService
from gateway.tenants.sqlite_store import SQLiteKeyStore
from gateway.tenants.usage import UsageCounts, compute_units, generation_usage, next_day_start, next_month_start


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    return functools.wraps(test)(lambda *args, **kwargs: asyncio.run(test(*args, **kwargs)))


class QueuedJobs:
    """The one thing KeyService asks the job store: how many jobs a key has queued."""

    def __init__(self, queued: int) -> None:
        self.queued = queued

    async def count_queued(self, owner: str | None = None) -> int:
        return self.queued


def service(tmp_path: Path, queued: int = 0) -> tuple[KeyService, SQLiteJobStore]:
    """Keys on a SQLite job store's connection, as the gateway has them; the store closes it."""
    settings = Settings(api_keys="team=team-key-0123456789", admin_token="admin-token-0123456789",
                        jobs_db=tmp_path / "jobs.sqlite3")
    jobs = SQLiteJobStore(settings.jobs_db)
    return KeyService(settings, SQLiteKeyStore(jobs), QueuedJobs(queued)), jobs  # type: ignore[arg-type]


@run
async def test_the_file_holds_hashes_and_rotation_and_revocation_take_effect(tmp_path: Path) -> None:
    keys, jobs = service(tmp_path)
    key, secret = await keys.create(KeyCreate(name="acme", scopes=[Scope.generate]))
    identity = await keys.authenticate(secret)
    assert identity is not None and identity.caller == key.id and identity.scopes == {Scope.generate}
    assert await keys.authenticate("i2v_" + "x" * 43) is None and await keys.authenticate("team-key") is None
    admin = await keys.authenticate("admin-token-0123456789")
    assert admin is not None and admin.scopes == {Scope.admin}

    _, second = await keys.rotate(key.id, overlap_s=600)
    assert await keys.authenticate(secret) is not None and await keys.authenticate(second) is not None
    _, third = await keys.rotate(key.id, overlap_s=0)
    for old in (secret, second):
        assert await keys.authenticate(old) is None
    await keys.update(key.id, KeyUpdate(expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)))
    with pytest.raises(UnauthorizedError, match="expired"):
        await keys.authenticate(third)
    await keys.update(key.id, KeyUpdate.model_validate({"expires_at": None}))
    assert await keys.authenticate(third) is not None
    await keys.revoke(key.id)
    with pytest.raises(UnauthorizedError, match="revoked"):
        await keys.authenticate(third)
    await jobs.close()
    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert key.id.encode() in stored
    for plain in (secret, second, third):
        assert plain.encode() not in stored and plain[12:].encode() not in stored


@run
async def test_usage_sums_per_day_and_quotas_name_themselves_with_their_reset(tmp_path: Path) -> None:
    keys, jobs = service(tmp_path)
    key, _ = await keys.create(KeyCreate(name="acme", scopes=[Scope.generate],
                                         quotas=KeyQuotas(videos_per_day=2, compute_units_per_month=1.0)))
    identity = await keys.authenticate((await keys.rotate(key.id, 0))[1])
    assert identity is not None
    video = generation_usage(succeeded=True, steps=2, frames=8, width=64, height=64, model_seconds=0.5)
    await keys.record(key.id, video)
    await keys.admit(identity)  # one of two videos today: admitted
    await keys.record(key.id, generation_usage(succeeded=True, cached=True, frames=8))
    await keys.record(key.id, generation_usage(succeeded=False))
    with pytest.raises(QuotaExceededError, match="videos_per_day") as refused:
        await keys.admit(identity)
    assert 0 < int(refused.value.headers["Retry-After"]) <= 86401
    today = dt.datetime.now(dt.timezone.utc).date()
    usage = (await keys.usage(today.replace(day=1), today, key.id))[key.id][today.isoformat()]
    assert usage == UsageCounts(requests=3, videos=2, frames=16, compute_units=compute_units(2, 8, 64, 64),
                                model_seconds=0.5, cache_hits=1, failed=1)
    states = {state.quota: state for state in await keys.quota_states(identity.key)}  # type: ignore[arg-type]
    assert states["videos_per_day"].used == 2 and states["compute_units_per_month"].used == 0.065536
    await jobs.close()


def test_compute_units_and_the_periods_quotas_reset_at() -> None:
    assert compute_units(50, 16, 512, 512) == pytest.approx(209.7152)
    late_december = dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.timezone.utc).timestamp()
    assert next_day_start(late_december) == dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    assert next_month_start(late_december) == dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    assert next_month_start(dt.datetime(2027, 1, 31, tzinfo=dt.timezone.utc).timestamp()) == \
        dt.datetime(2027, 2, 1, tzinfo=dt.timezone.utc).timestamp()


@run
async def test_a_keys_own_queue_limit_and_concurrency_cap(tmp_path: Path) -> None:
    keys, jobs = service(tmp_path, queued=2)
    key, secret = await keys.create(KeyCreate(name="small", scopes=[Scope.generate],
                                              limits=KeyLimits(max_queued=2, max_concurrent=1)))
    identity = await keys.authenticate(secret)
    assert identity is not None
    with pytest.raises(RateLimitedError, match="2 queued jobs"):
        await keys.admit(identity)
    await jobs.close()

    queue = FairQueue(per_key=4, total=0, max_waiting=4, max_wait_s=30)
    order: list[str] = []
    release = asyncio.Event()

    async def call(name: str) -> None:
        async with queue.slot(key.id, cap=1):
            order.append(name)
            await release.wait()

    tasks = [asyncio.create_task(call(name)) for name in ("a", "b")]
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["a"] and queue.waiting(key.id) == 1  # the key's own cap of 1, not the gateway's 4
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["a", "b"]


def test_key_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_key_labels", set())  # this process's other tests keep theirs
    names = [f"key_label_test_{n}" for n in range(metrics.KEY_LABELS_MAX + 5)]
    labels = [metrics.key_label(name) for name in names]
    assert labels[:metrics.KEY_LABELS_MAX] == names[:metrics.KEY_LABELS_MAX]
    assert set(labels[metrics.KEY_LABELS_MAX:]) == {"other"}
    assert metrics.key_label(names[0]) == names[0] and metrics.key_label("jwt:someone") == "jwt"
