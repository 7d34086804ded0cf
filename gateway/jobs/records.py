"""A job as stored: its request, its lifecycle and the indexes a store keeps for it.

The lifecycle lives here and nowhere else: every change of status is one of the methods of
``Job`` below, each checked against ``TRANSITIONS``. An illegal move raises
``IllegalTransitionError``; the callers (service, workers, reaper) only choose which move to make.

    queued ──claim──> running ──succeed/fail──> succeeded | failed
      │  ^              │  │
      │  └──requeue─────┘  └──request_cancel──> cancelling ──cancel/succeed/fail──> ...
      └──cancel/fail──> cancelled | failed
"""

from __future__ import annotations

import time
import uuid
from enum import Enum

from pydantic import BaseModel, Field

from gateway.generation.progress import Progress
from gateway.generation.results import VideoResult
from gateway.schemas import JobStatus, VideoParams

Q, R, C = JobStatus.queued, JobStatus.running, JobStatus.cancelling
OK, FAILED, CANCELLED = JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # queued: a worker claims it, the caller cancels it, or its deadline passes before it starts
    Q: frozenset({R, CANCELLED, FAILED}),
    # running: it ends, the caller asks it to stop, or it goes back to the queue (its worker
    # was lost, the model was away, or the gateway shut down)
    R: frozenset({OK, FAILED, C, Q}),
    # cancelling: the worker stops it, or it ended before the cancel reached the model; a lost
    # worker ends it as cancelled too (the caller wanted it stopped)
    C: frozenset({CANCELLED, OK, FAILED}),
    OK: frozenset(), FAILED: frozenset(), CANCELLED: frozenset(),
}
ACTIVE = (R, C)  # a worker holds the job under a lease


class IllegalTransitionError(RuntimeError):
    """A job was asked to move where its lifecycle does not go."""


class DeliveryAttempt(BaseModel):
    at: float
    status_code: int | None = None
    error: str | None = None
    duration_ms: int


class WebhookState(str, Enum):
    pending = "pending"
    delivering = "delivering"
    delivered = "delivered"
    failed = "failed"


class Webhook(BaseModel):
    url: str
    state: WebhookState = WebhookState.pending
    next_at: float | None = None
    attempts: list[DeliveryAttempt] = Field(default_factory=list)


class JobProgress(BaseModel):
    step: int
    total: int


class Job(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    owner: str
    status: JobStatus = JobStatus.queued
    params: VideoParams
    base_url: str  # for video_url in webhooks, which have no request to take it from
    width: int
    height: int
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    deadline_at: float
    run_after: float = Field(default_factory=time.time)
    attempts: int = 0  # times a worker started it and was lost or finished
    worker: str | None = None
    lease_until: float | None = None
    progress: JobProgress | None = None
    message: str = "queued"
    result: VideoResult | None = None
    error_status: int | None = None
    webhook: Webhook | None = None
    events: int = 0  # events recorded so far; the last one's id

    # --- the lifecycle: the only ways a job's status changes ---

    def _to(self, status: JobStatus, now: float | None, **changes: object) -> Job:
        if status not in TRANSITIONS[self.status]:
            raise IllegalTransitionError(f"job {self.id}: {self.status.value} -> {status.value} is not allowed")
        now = time.time() if now is None else now
        return self.model_copy(update={"status": status, "updated_at": now, **changes})

    def claim(self, worker: str, lease_s: float, now: float | None = None) -> Job:
        now = time.time() if now is None else now
        return self._to(R, now, worker=worker, lease_until=now + lease_s, attempts=self.attempts + 1,
                        started_at=self.started_at or now, message="running", progress=None)

    def request_cancel(self, now: float | None = None) -> Job:
        return self._to(C, now, message="cancelling")

    def requeue(self, reason: str, run_after: float | None = None, *, counts_as_attempt: bool = True,
                now: float | None = None) -> Job:
        """Back to the queue; ``counts_as_attempt`` False when the start was not the job's fault
        nor a lost worker's (a clean shutdown), so it does not use up an attempt."""
        now = time.time() if now is None else now
        return self._to(Q, now, run_after=now if run_after is None else run_after, worker=None, lease_until=None,
                        attempts=self.attempts if counts_as_attempt else max(0, self.attempts - 1), message=reason)

    def succeed(self, result: VideoResult, now: float | None = None) -> Job:
        return self._end(OK, result.message, now, result=result)

    def fail(self, status: int, message: str, now: float | None = None) -> Job:
        return self._end(FAILED, message, now, error_status=status)

    def cancel(self, message: str, now: float | None = None) -> Job:
        return self._end(CANCELLED, message, now)

    def _end(self, status: JobStatus, message: str, now: float | None, **changes: object) -> Job:
        now = time.time() if now is None else now
        webhook = self.webhook
        if webhook is not None:
            webhook = webhook.model_copy(update={"state": WebhookState.pending, "next_at": now})
        return self._to(status, now, message=message, finished_at=now, worker=None, lease_until=None,
                        webhook=webhook, **changes)

    # --- leases and progress (no change of status) ---

    def held_by(self, worker: str) -> bool:
        return self.status in ACTIVE and self.worker == worker

    def renew(self, lease_s: float, progress: Progress | None = None, now: float | None = None) -> Job:
        now = time.time() if now is None else now
        update: dict[str, object] = {"lease_until": now + lease_s, "updated_at": now}
        if progress is not None and progress.started:
            update["progress"] = JobProgress(step=progress.step, total=progress.total)
        return self.model_copy(update=update)

    def index_scores(self) -> dict[str, float | None]:
        """The sorted indexes this job is in (score) or not in (None); every store keeps these."""
        webhook_due = (self.webhook.next_at if self.webhook is not None
                       and self.webhook.state in (WebhookState.pending, WebhookState.delivering) else None)
        return {
            "queued": self.run_after if self.status is Q else None,
            "running": self.lease_until if self.status in ACTIVE else None,
            "webhook": webhook_due,
            "finished": self.finished_at if self.status.final else None,
        }


INDEXES = ("queued", "running", "webhook", "finished")


class JobEvent(BaseModel):
    """One entry of a job's event log: every change of status, and every denoising step."""

    id: int  # 1, 2, ... per job: the SSE event id, so a client resumes after the last it saw
    type: str  # the status it moved to: queued, running (also per step), cancelling, succeeded, ...
    at: float
    step: int | None = None
    total: int | None = None
    message: str = ""


def next_event(before: Job | None, after: Job) -> tuple[Job, JobEvent] | None:
    """The event a change records, with the job counting it; None when nothing callers see moved.
    The stores call this inside the same atomic write as the change itself."""
    moved = before is None or before.status is not after.status
    stepped = not moved and after.progress is not None and after.progress != (before.progress if before else None)
    if not (moved or stepped):
        return None
    counted = after.model_copy(update={"events": (before.events if before else 0) + 1})
    progress = after.progress if after.status in ACTIVE else None
    return counted, JobEvent(id=counted.events, type=after.status.value, at=after.updated_at,
                             step=progress.step if progress else None, total=progress.total if progress else None,
                             message=after.message)


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with a different body."""
