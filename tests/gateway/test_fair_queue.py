"""Unit tests of the fair admission of synchronous generations (gateway/edge/fair_queue.py)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from gateway.edge.fair_queue import FairQueue, QueueRejected


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
