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
from gateway.schemas import JobStatus, VideoParams, WebhookEvent

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
    event: WebhookEvent | None = None  # None in records from before the event filter: completed


class WebhookState(str, Enum):
    pending = "pending"
    delivering = "delivering"
    delivered = "delivered"
    failed = "failed"


PROGRESS_WEBHOOK_EVERY_S = 2.0  # progress messages are throttled to one per this many seconds


class Webhook(BaseModel):
    """The job's callback: which events it wants, the one message due now, and every attempt.

    One message is due at a time; a newer one takes its place (the completed message any other),
    since each carries the whole job as it is when sent. Only start and completed are retried."""

    url: str
    events: list[WebhookEvent] = Field(default_factory=lambda: [WebhookEvent.completed])
    state: WebhookState = WebhookState.pending  # of the message due (or the last one sent)
    due: WebhookEvent | None = None
    next_at: float | None = None
    progress_at: float | None = None  # when the last progress message was made due
    attempts: list[DeliveryAttempt] = Field(default_factory=list)

    def due_event(self) -> WebhookEvent | None:
        """The event due now, if any (a record from before the filter: completed once scheduled)."""
        if self.due is None and self.next_at is not None and self.state in (WebhookState.pending,
                                                                             WebhookState.delivering):
            return WebhookEvent.completed
        return self.due

    def make_due(self, event: WebhookEvent, now: float) -> Webhook:
        update: dict[str, object] = {"due": event, "state": WebhookState.pending, "next_at": now}
        if event is WebhookEvent.progress:
            update["progress_at"] = now
        return self.model_copy(update=update)

    def wants_progress(self, now: float) -> bool:
        """A progress message may be made due: asked for, nothing else waiting, and the throttle passed."""
        return (WebhookEvent.progress in self.events and self.due_event() in (None, WebhookEvent.progress)
                and self.state is not WebhookState.delivering
                and (self.progress_at is None or now - self.progress_at >= PROGRESS_WEBHOOK_EVERY_S))

    def tries(self, event: WebhookEvent) -> int:
        return sum(1 for a in self.attempts if (a.event or WebhookEvent.completed) is event)


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
    started_at: float | None = None  # the first start
    claimed_at: float | None = None  # the start of the current (or last) attempt
    cancel_at: float | None = None  # the caller's deadline (Cancel-After): cancelled past it
    finished_at: float | None = None
    deadline_at: float
    run_after: float = Field(default_factory=time.time)
    attempts: int = 0  # times a worker started it (waits for the model included)
    # Starts lost to a worker (its gateway killed, its lease lapsed): ``job_max_attempts`` of
    # these fail the job. Waiting for the model or the store never counts here.
    lost_workers: int = 0
    # The fencing token: one more on every claim. A worker writes only while the job carries the
    # generation it claimed, so a stale worker (its lease lapsed, the job claimed again, even by
    # another worker of the same gateway) can neither finish nor renew it.
    generation: int = 0
    model_waits: int = 0  # times it went back to wait for the model: its retry backoff grows with these
    waiting_for_model: bool = False  # queued until the model is back (ModelWatch makes it due sooner)
    worker: str | None = None
    lease_until: float | None = None
    progress: JobProgress | None = None
    message: str = "queued"
    result: VideoResult | None = None
    error_status: int | None = None
    webhook: Webhook | None = None
    events: int = 0  # events recorded so far; the last one's id
    # Made through /v1/videos (gateway/openai): its input is kept until retention deletes the job,
    # since a remix runs the same image again; remixed_from names the video it remixed.
    keep_input: bool = False
    remixed_from: str | None = None

    # --- the lifecycle: the only ways a job's status changes ---

    def _to(self, status: JobStatus, now: float | None, **changes: object) -> Job:
        if status not in TRANSITIONS[self.status]:
            raise IllegalTransitionError(f"job {self.id}: {self.status.value} -> {status.value} is not allowed")
        now = time.time() if now is None else now
        return self.model_copy(update={"status": status, "updated_at": now, **changes})

    def claim(self, worker: str, lease_s: float, now: float | None = None) -> Job:
        now = time.time() if now is None else now
        webhook = self.webhook
        if webhook is not None and WebhookEvent.start in webhook.events and self.started_at is None:
            webhook = webhook.make_due(WebhookEvent.start, now)
        return self._to(R, now, worker=worker, lease_until=now + lease_s, attempts=self.attempts + 1,
                        generation=self.generation + 1, waiting_for_model=False,
                        started_at=self.started_at or now, claimed_at=now, message="running", progress=None,
                        webhook=webhook)

    def request_cancel(self, now: float | None = None) -> Job:
        return self._to(C, now, message="cancelling")

    def requeue(self, reason: str, run_after: float | None = None, *, lost_worker: bool = False,
                now: float | None = None) -> Job:
        """Back to the queue; ``lost_worker`` when its worker stopped renewing the lease (the one
        kind of start that counts toward ``job_max_attempts``)."""
        now = time.time() if now is None else now
        return self._to(Q, now, run_after=now if run_after is None else run_after, worker=None, lease_until=None,
                        lost_workers=self.lost_workers + int(lost_worker), message=reason)

    def wait_for_model(self, reason: str, run_after: float, now: float | None = None, *,
                       lost_worker: bool = False) -> Job:
        """Back to the queue until the model is back: at ``run_after`` at the latest, sooner when
        ``resume`` finds the model ready again. ``lost_worker``: the model's process died under
        it, which counts like a lost worker."""
        return self.requeue(f"waiting to retry: {reason}", run_after, now=now, lost_worker=lost_worker).model_copy(
            update={"model_waits": self.model_waits + 1, "waiting_for_model": True})

    def resume(self, now: float | None = None) -> Job | None:
        """Due now, if it waits for the model to come back (no change of status, so no event)."""
        now = time.time() if now is None else now
        if self.status is not Q or not self.waiting_for_model or self.run_after <= now:
            return None
        return self.model_copy(update={"run_after": now})

    def succeed(self, result: VideoResult, now: float | None = None) -> Job:
        return self._end(OK, result.message, now, result=result)

    def fail(self, status: int, message: str, now: float | None = None) -> Job:
        return self._end(FAILED, message, now, error_status=status)

    def cancel(self, message: str, now: float | None = None) -> Job:
        return self._end(CANCELLED, message, now)

    def _end(self, status: JobStatus, message: str, now: float | None, **changes: object) -> Job:
        now = time.time() if now is None else now
        webhook = self.webhook.make_due(WebhookEvent.completed, now) if self.webhook is not None else None
        return self._to(status, now, message=message, finished_at=now, worker=None, lease_until=None,
                        webhook=webhook, **changes)

    # --- deadlines ---

    def past_cancel_at(self, now: float | None = None) -> bool:
        return self.cancel_at is not None and (time.time() if now is None else now) >= self.cancel_at

    def deadline_message(self) -> str:
        allowed = (self.cancel_at or self.created_at) - self.created_at
        return f"cancelled: its Cancel-After deadline of {allowed:g} s passed{self.steps_note()}"

    def steps_note(self) -> str:
        if self.progress is None:
            return " before it started" if self.status is Q else ""
        return f" after {self.progress.step} of {self.progress.total} denoising steps"

    # --- leases and progress (no change of status) ---

    def held_by(self, worker: str, generation: int) -> bool:
        """Whether ``worker``'s claim number ``generation`` still holds the job (the fencing check)."""
        return self.status in ACTIVE and self.worker == worker and self.generation == generation

    def renew(self, lease_s: float, progress: Progress | None = None, now: float | None = None) -> Job:
        now = time.time() if now is None else now
        update: dict[str, object] = {"lease_until": now + lease_s, "updated_at": now}
        if progress is not None and progress.started:
            update["progress"] = JobProgress(step=progress.step, total=progress.total)
            if self.webhook is not None and self.webhook.wants_progress(now):
                update["webhook"] = self.webhook.make_due(WebhookEvent.progress, now)
        return self.model_copy(update=update)

    def index_scores(self) -> dict[str, float | None]:
        """The sorted indexes this job is in (score) or not in (None); every store keeps these."""
        webhook_due = (self.webhook.next_at if self.webhook is not None
                       and self.webhook.state in (WebhookState.pending, WebhookState.delivering) else None)
        queued = self.status is Q
        return {
            "queued": self.run_after if queued else None,
            "running": self.lease_until if self.status in ACTIVE else None,
            "webhook": webhook_due,
            "finished": self.finished_at if self.status.final else None,
            # The few queued jobs the reaper and the model watch look for, so that neither reads
            # the whole queue every second.
            "deadline": self.cancel_at if queued and self.cancel_at is not None else None,
            "model_wait": self.run_after if queued and self.waiting_for_model else None,
        }


INDEXES = ("queued", "running", "webhook", "finished", "deadline", "model_wait")


class JobEvent(BaseModel):
    """One entry of a job's event log: every change of status, and every denoising step."""

    id: int  # 1, 2, ... per job: the SSE event id, so a client resumes after the last it saw
    type: str  # the status it moved to: queued, running (also per step), cancelling, succeeded, ...
    at: float
    step: int | None = None
    total: int | None = None
    eta_s: float | None = None  # running: seconds left at this step's pace
    message: str = ""
    queue_position: int | None = None  # queued: not stored, filled in as the stream sends it


def next_event(before: Job | None, after: Job) -> tuple[Job, JobEvent] | None:
    """The event a change records, with the job counting it; None when nothing callers see moved.
    The stores call this inside the same atomic write as the change itself."""
    moved = before is None or before.status is not after.status
    stepped = not moved and after.progress is not None and after.progress != (before.progress if before else None)
    if not (moved or stepped):
        return None
    counted = after.model_copy(update={"events": (before.events if before else 0) + 1})
    progress = after.progress if after.status in ACTIVE else None
    eta_s = None
    if progress is not None and progress.step > 0 and after.claimed_at is not None:
        eta_s = round((progress.total - progress.step) * (after.updated_at - after.claimed_at) / progress.step, 1)
    return counted, JobEvent(id=counted.events, type=after.status.value, at=after.updated_at,
                             step=progress.step if progress else None, total=progress.total if progress else None,
                             eta_s=eta_s, message=after.message)


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with a different body."""
