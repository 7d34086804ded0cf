"""Unit tests of the fair admission of synchronous generations (gateway/edge/fair_queue.py)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from gateway.edge.fair_queue import DeadlinePassed, FairQueue, QueueRejected


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    return functools.wraps(test)(lambda: asyncio.run(test()))


class Calls:
    """Calls that hold a slot until released, recording the order in which they got one."""

    def __init__(self, queue: FairQueue) -> None:
        self.queue = queue
        self.started: list[str] = []
        self.finish: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task] = {}

    def send(self, name: str, key: str) -> None:
        self.finish[name] = asyncio.Event()

        async def call() -> None:
            async with self.queue.slot(key):
                self.started.append(name)
                await self.finish[name].wait()
        self.tasks[name] = asyncio.create_task(call())

    async def settle(self) -> None:
        for _ in range(5):  # let every woken task run up to its next wait
            await asyncio.sleep(0)

    async def end(self, name: str) -> None:
        self.finish[name].set()
        await self.tasks[name]
        await self.settle()


@run
async def test_a_call_over_its_keys_cap_waits_instead_of_failing() -> None:
    calls = Calls(FairQueue(per_key=2, total=10, max_waiting=8, max_wait_s=30))
    for n in range(5):
        calls.send(f"a{n}", "alice")
    await calls.settle()
    assert calls.started == ["a0", "a1"]
    await calls.end("a0")
    assert calls.started == ["a0", "a1", "a2"]
    for name in ("a1", "a2", "a3", "a4"):
        await calls.end(name)
    assert calls.started == ["a0", "a1", "a2", "a3", "a4"]


@run
async def test_keys_are_served_in_turn() -> None:
    calls = Calls(FairQueue(per_key=4, total=2, max_waiting=8, max_wait_s=30))
    for n in range(6):
        calls.send(f"a{n}", "alice")
    await calls.settle()
    calls.send("b0", "bob")
    calls.send("b1", "bob")
    await calls.settle()
    assert calls.started == ["a0", "a1"]
    await calls.end("a0")  # bob's turn, although alice's line is older
    await calls.end("a1")  # alice's turn
    await calls.end("b0")  # bob's turn
    assert calls.started == ["a0", "a1", "b0", "a2", "b1"]


@run
async def test_a_key_at_its_own_cap_does_not_block_the_others() -> None:
    calls = Calls(FairQueue(per_key=1, total=2, max_waiting=8, max_wait_s=30))
    calls.send("a0", "alice")
    calls.send("a1", "alice")
    calls.send("b0", "bob")
    await calls.settle()
    assert calls.started == ["a0", "b0"]
    await calls.end("b0")
    assert calls.started == ["a0", "b0"]  # alice is at her cap: the free slot waits for another key
    await calls.end("a0")
    assert calls.started == ["a0", "b0", "a1"]


@run
async def test_a_full_line_is_refused_with_retry_after() -> None:
    queue = FairQueue(per_key=1, total=0, max_waiting=1, max_wait_s=30)
    calls = Calls(queue)
    calls.send("a0", "alice")
    calls.send("a1", "alice")
    await calls.settle()
    with pytest.raises(QueueRejected) as refused:
        async with queue.slot("alice"):
            pass
    assert refused.value.retry_after_s >= 1 and "waiting" in refused.value.reason
    async with queue.slot("bob"):  # another key is not affected
        pass
    for name in ("a0", "a1"):
        await calls.end(name)


@run
async def test_a_wait_past_the_limit_is_refused_and_leaves_no_trace() -> None:
    queue = FairQueue(per_key=1, total=0, max_waiting=4, max_wait_s=0.05)
    calls = Calls(queue)
    calls.send("a0", "alice")
    await calls.settle()
    with pytest.raises(QueueRejected, match="waited"):
        async with queue.slot("alice"):
            pass
    assert queue.waiting("alice") == 0
    await calls.end("a0")
    async with queue.slot("alice"):
        assert queue.running("alice") == 1


@run
async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    calls = Calls(FairQueue(per_key=1, total=0, max_waiting=4, max_wait_s=30))
    calls.send("a0", "alice")
    calls.send("a1", "alice")
    calls.send("a2", "alice")
    await calls.settle()
    calls.tasks["a1"].cancel()
    await calls.settle()
    await calls.end("a0")
    assert calls.started == ["a0", "a2"]
    await calls.end("a2")
    assert calls.queue.running("alice") == 0


@run
async def test_a_callers_deadline_ends_its_wait_and_it_leaves_the_line() -> None:
    queue = FairQueue(per_key=1, total=10, max_waiting=1, max_wait_s=30)
    calls = Calls(queue)
    calls.send("a0", "alice")
    await calls.settle()
    with pytest.raises(DeadlinePassed):
        async with queue.slot("alice", deadline_s=0.05):
            raise AssertionError("a call past its deadline got a slot")
    # It left the line: the line (of one) has room again, and the next call is the one served.
    assert queue.waiting("alice") == 0
    calls.send("a1", "alice")
    await calls.settle()
    await calls.end("a0")
    assert calls.started == ["a0", "a1"]
    await calls.end("a1")


@run
async def test_a_deadline_already_passed_is_refused_at_once_and_a_free_slot_still_serves() -> None:
    queue = FairQueue(per_key=1, total=1, max_waiting=4, max_wait_s=30)
    async with queue.slot("alice", deadline_s=0.0):  # a free slot: the generation checks the time itself
        with pytest.raises(DeadlinePassed):
            async with queue.slot("bob", deadline_s=0.0):
                pass
        assert queue.waiting("bob") == 0


@run
async def test_the_lines_own_bound_stays_a_429_when_it_comes_before_the_deadline() -> None:
    queue = FairQueue(per_key=1, total=10, max_waiting=4, max_wait_s=0.05)
    async with queue.slot("alice"):
        with pytest.raises(QueueRejected):
            async with queue.slot("alice", deadline_s=60):
                pass
