"""Typed answers of the API, mirroring the gateway's response bodies (``gateway/schemas.py``).

The client never imports the gateway. Every model allows extra fields, so a newer gateway that
adds fields does not break an older client; the new fields are kept (``model_extra``).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    def __getitem__(self, name: str) -> Any:
        """``answer["video_url"]`` as well as ``answer.video_url``: the 0.2 client answered dicts."""
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None


class GenerateResponse(ApiModel):
    """What ``POST /api/v1/generate`` answers, and a succeeded job's ``result``."""

    success: bool = True
    message: str
    video_path: str
    video_url: str
    inference_time: float
    seed: int
    width: int
    height: int
    num_frames: int
    fps: int
    cached: bool = False


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


FINAL_STATUSES = frozenset(status.value for status in JobStatus if status.final)


class JobError(ApiModel):
    status: int
    message: str


class JobProgress(ApiModel):
    step: int
    total: int
    fraction: float = 0.0


class DeliveryAttempt(ApiModel):
    at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: int


class WebhookState(ApiModel):
    url: str
    state: str
    attempts: list[DeliveryAttempt] = Field(default_factory=list)


class JobResponse(ApiModel):
    job_id: str
    status: JobStatus
    message: str
    status_url: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: JobProgress | None = None
    result: GenerateResponse | None = None
    error: JobError | None = None
    attempts: int = 0
    webhook: WebhookState | None = None


class JobListResponse(ApiModel):
    jobs: list[JobResponse]
    next_offset: int | None = None


class BatchItemResult(ApiModel):
    index: int
    job: JobResponse | None = None
    error: JobError | None = None


class BatchResponse(ApiModel):
    accepted: int
    rejected: int
    items: list[BatchItemResult]


class Progress(ApiModel):
    """What a ``wait`` progress callback receives: from the job's event stream, or from polling."""

    job_id: str
    status: str  # a JobStatus value; a str so that a newer gateway's event types still parse
    step: int | None = None
    total: int | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return self.step / self.total if self.step is not None and self.total else None


class WebhookEvent(ApiModel):
    """A verified webhook delivery: ``type`` is job.succeeded, job.failed or job.cancelled."""

    type: str
    timestamp: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def job(self) -> JobResponse:
        return JobResponse.model_validate(self.data)
