"""Where jobs live. ``JobStore`` is the interface; ``SQLiteJobStore`` the single-gateway default.

Every change to a job goes through ``mutate(id, change)``: the store reads the job, calls
``change`` and writes the result atomically (a transaction here, WATCH/MULTI in Redis), so two
workers or two gateways never both claim a job. The stores keep records and the indexes of
``Job.index_scores``; which changes are legal is ``Job``'s business (records.py).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway import metrics
from gateway.generation.cache import CacheIndex
from gateway.jobs.records import Job, JobEvent

Change = Callable[[Job], Job | None]


class EndedJobs(Protocol):
    """Told of each job that ended, once, by the replica whose write ended it (the usage ledger)."""

    async def job_ended(self, job: Job) -> None: ...


@dataclass(frozen=True)
class IdempotencyKey:
    owner: str
    key: str
    body_hash: str


class JobStore(CacheIndex):
    """Jobs, their input images, idempotency keys and the result-cache index."""

    ended: EndedJobs | None = None  # set by the app (gateway/tenants: usage per key)

    @abstractmethod
    async def insert(self, job: Job, image: bytes, idempotency: IdempotencyKey | None,
                     ttl_s: float) -> tuple[Job, bool]:
        """Store a new job, or return the job an earlier request with the same key made
        (``created`` False). Raises ``IdempotencyConflictError`` when the body differs."""

    @abstractmethod
    async def get(self, job_id: str) -> Job | None: ...

    async def mutate(self, job_id: str, change: Change) -> tuple[Job | None, bool]:
        """Apply ``change`` atomically; (job after, whether it changed). ``change`` returning
        None leaves the job as it is. A change that ends the job is counted (i2v_jobs_ended_total)."""
        ends = False

        def noting_the_end(job: Job) -> Job | None:
            nonlocal ends  # a store may run the change again (a WATCH conflict): the last run wrote
            changed = change(job)
            ends = changed is not None and changed.status.final and not job.status.final
            return changed

        job, changed = await self._mutate(job_id, noting_the_end)
        if changed and ends and job is not None:
            metrics.JOBS_ENDED.labels(job.status.value).inc()
            if self.ended is not None:
                await self.ended.job_ended(job)
        return job, changed

    @abstractmethod
    async def _mutate(self, job_id: str, change: Change) -> tuple[Job | None, bool]:
        """``mutate`` as the store does it."""

    @abstractmethod
    async def due(self, index: str, until: float, limit: int = 20) -> list[str]:
        """Ids in ``index`` (see ``INDEXES``) with a score at or below ``until``, lowest first."""

    @abstractmethod
    async def jobs_in(self, index: str, until: float, limit: int) -> list[Job]:
        """The jobs ``due`` would name, read in one go (the queue order and ETAs need them all)."""

    @abstractmethod
    async def set_index(self, index: str, job_id: str, score: float | None) -> None:
        """Put a job in ``index`` with ``score``, or take it out (None), leaving the job as it is:
        for indexes that a gateway of an earlier version wrote no entry to, or a stale one."""

    async def drop_if_stale(self, index: str, job_id: str, job: Job | None) -> bool:
        """Take ``job_id`` out of ``index`` when the job (as just read) is gone or no longer belongs
        there: an entry a gateway of an earlier version left, which knew nothing of that index.
        Whether it was stale."""
        if job is not None and job.index_scores()[index] is not None:
            return False
        await self.set_index(index, job_id, None)
        return True

    @abstractmethod
    async def record_turn(self, owner: str, at: float) -> None:
        """Note that a worker just started one of ``owner``'s jobs (queue.py serves keys in turn)."""

    @abstractmethod
    async def turns(self, owners: list[str]) -> dict[str, float]:
        """When each of ``owners`` last had a job started; owners never served are left out."""

    @abstractmethod
    async def events_after(self, job_id: str, after: int, limit: int = 100) -> list[JobEvent]:
        """The job's events with an id above ``after``, oldest first (``next_event`` makes them)."""

    @abstractmethod
    async def list_for_owner(self, owner: str, offset: int, limit: int) -> list[Job]:
        """The owner's jobs, newest first."""

    @abstractmethod
    async def count_queued(self, owner: str | None = None) -> int: ...

    @abstractmethod
    async def load_input(self, job_id: str) -> bytes | None: ...

    @abstractmethod
    async def drop_input(self, job_id: str) -> None: ...

    @abstractmethod
    async def delete(self, job_id: str) -> None:
        """Forget a job, its input and its idempotency key."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot be reached."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""
