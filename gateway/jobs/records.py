"""A job as stored: its request, its state machine and the indexes a store keeps for it."""

from __future__ import annotations

import time
import uuid
from enum import Enum

from pydantic import BaseModel, Field

from gateway.schemas import JobStatus, VideoParams


class JobResult(BaseModel):
    video_file: str  # name inside the outputs folder
    seed: int
    width: int
    height: int
    num_frames: int
    fps: int
    inference_time: float
    cached: bool = False


class JobProgress(BaseModel):
    step: int
    total: int


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


class Job(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    owner: str
    status: JobStatus = JobStatus.queued
    params: VideoParams
    base_url: str  # for video_url in webhooks, which have no request to take it from
    width: int
    height: int
    cache_key: str | None = None
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    deadline_at: float
    run_after: float = Field(default_factory=time.time)
    attempts: int = 0  # times a worker has started it
    worker: str | None = None
    lease_until: float | None = None
    cancel_requested: bool = False
    progress: JobProgress | None = None
    message: str = "queued"
    result: JobResult | None = None
    error_status: int | None = None
    webhook: Webhook | None = None

    def index_scores(self) -> dict[str, float | None]:
        """The sorted indexes this job is in (score) or not in (None); every store keeps these."""
        webhook_due = (self.webhook.next_at if self.webhook is not None
                       and self.webhook.state in (WebhookState.pending, WebhookState.delivering) else None)
        return {
            "queued": self.run_after if self.status is JobStatus.queued else None,
            "running": self.lease_until if self.status is JobStatus.running else None,
            "webhook": webhook_due,
            "finished": self.finished_at if self.status.final else None,
        }

    def finish(self, status: JobStatus, message: str, *, result: JobResult | None = None,
               error_status: int | None = None, now: float | None = None) -> Job:
        now = time.time() if now is None else now
        webhook = self.webhook
        if webhook is not None:
            webhook = webhook.model_copy(update={"state": WebhookState.pending, "next_at": now})
        return self.model_copy(update={
            "status": status, "message": message, "result": result, "error_status": error_status,
            "finished_at": now, "updated_at": now, "worker": None, "lease_until": None, "webhook": webhook})


INDEXES = ("queued", "running", "webhook", "finished")


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with a different body."""
