"""The order in which workers take queued jobs, and what it means for a job's place and wait.

Keys are served in turn: the next job is the oldest one of the key with the fewest jobs
running, and among keys level on that, of the key whose last turn is oldest (the store keeps
when each key last had a job started). So a key that queued many jobs cannot starve one that
queued a single job, even with one worker. Workers
claim in ``fair_order``, and a job's ``queue_position`` is its place in that same order.

The wait is an estimate from the jobs running now: their seconds per denoising step (which
already includes the slowdown of sharing the model with each other), the steps left in them
and in the jobs ahead, spread over as many jobs as run at once.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.jobs.records import ACTIVE, Job

RUNNING_WINDOW = 1000  # running jobs read to decide whose turn it is and how fast jobs go
LATER = 1e15  # a turn taken in fair_order's simulation: after every real one (a Unix time)


def fair_order(queued: Iterable[Job], running: Iterable[Job], turns: Mapping[str, float] | None = None) -> list[Job]:
    """``queued`` in the order workers claim them: each pick goes to the key with the fewest jobs
    running (counting the picks before it); among those, to the key whose last turn (``turns``:
    when a job of it last started) is oldest, a key never served first; then the oldest job."""
    lines: dict[str, deque[Job]] = defaultdict(deque)
    for job in sorted(queued, key=lambda j: (j.run_after, j.created_at)):
        lines[job.owner].append(job)
    busy = Counter(job.owner for job in running)
    turns = turns or {}
    heap = [(busy[owner], turns.get(owner, 0.0), line[0].run_after, line[0].created_at, owner)
            for owner, line in lines.items()]
    heapq.heapify(heap)
    order: list[Job] = []
    while heap:
        count, _, _, _, owner = heapq.heappop(heap)
        line = lines[owner]
        order.append(line.popleft())
        if line:
            # Its turn is now later than any real one: after the keys it was level with.
            heapq.heappush(heap, (count + 1, LATER + len(order), line[0].run_after, line[0].created_at, owner))
    return order


def seconds_per_step(job: Job, now: float) -> float | None:
    """How fast a running job goes, from its steps so far in this attempt."""
    if job.claimed_at is None or job.progress is None or job.progress.step <= 0:
        return None
    return max(0.0, now - job.claimed_at) / job.progress.step


@dataclass(frozen=True)
class Place:
    """Where a job stands: its place in the queue (while queued) and the seconds until it ends."""

    queue_position: int | None = None
    eta_s: float | None = None


class QueueSnapshot:
    """The queue and the running jobs at one moment; answers ``Place`` for any job in them."""

    def __init__(self, queued: list[Job], running: list[Job], fallback_s_per_step: float | None,
                 turns: Mapping[str, float] | None = None, now: float | None = None) -> None:
        self.now = time.time() if now is None else now
        self.order = fair_order(queued, running, turns)
        self.running = running
        rates = [rate for job in running if (rate := seconds_per_step(job, self.now)) is not None]
        self.s_per_step = sum(rates) / len(rates) if rates else fallback_s_per_step
        self._positions = {job.id: index for index, job in enumerate(self.order, start=1)}

    def _left_s(self, job: Job) -> float | None:
        """Seconds of model time a job still needs, running or not."""
        own = seconds_per_step(job, self.now)
        rate = own if own is not None else self.s_per_step
        if rate is None:
            return None
        done = job.progress.step if job.progress is not None and job.status in ACTIVE else 0
        return max(0, job.params.steps - done) * rate

    def holds(self, job: Job) -> bool:
        """Whether the job is queued in this snapshot."""
        return job.id in self._positions

    def place(self, job: Job) -> Place:
        if job.status.final:
            return Place()
        position = self._positions.get(job.id)
        if position is None:  # running (or not in this snapshot)
            left = self._left_s(job)
            return Place(eta_s=None if left is None else round(left, 1))
        ahead = [self._left_s(other) for other in (*self.running, *self.order[:position - 1])]
        own = self._left_s(job)
        if own is None or any(left is None for left in ahead):
            return Place(queue_position=position)
        # The jobs ahead run side by side, as many at once as run now.
        wait = sum(left for left in ahead if left is not None) / max(1, len(self.running))
        return Place(queue_position=position, eta_s=round(wait + own, 1))
