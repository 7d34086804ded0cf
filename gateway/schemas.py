"""The REST contract (DESIGN.md, contract 1): request and response bodies."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Resolution(str, Enum):
    """Output sizes; width x height."""

    p256 = "256p"
    p512 = "512p"
    p768 = "768p"
    p1024 = "1024p"

    @property
    def size(self) -> tuple[int, int]:
        return RESOLUTION_SIZES[self]


RESOLUTION_SIZES = {
    Resolution.p256: (256, 256),
    Resolution.p512: (512, 512),
    Resolution.p768: (768, 768),
    Resolution.p1024: (1024, 576),
}


class FitMode(str, Enum):
    """How an image of another aspect ratio is fitted to the output size."""

    crop = "crop"  # scale to cover, cut the centre (upstream I2VGen-XL behaviour)
    pad = "pad"  # scale to fit inside, pad with black bars


class VideoParams(BaseModel):
    """Everything about the video except the image; a job stores these."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, description="What should happen in the video.")
    resolution: Resolution = Field(Resolution.p512, description="256p, 512p, 768p (square) or 1024p (1024x576).")
    num_frames: int = Field(16, ge=8, le=32, description="Frames in the video (the model was trained on 16 and 32).")
    fps: int = Field(8, ge=1, le=60, description="Frames per second of the MP4 file.")
    steps: int = Field(50, ge=1, le=150, description="Denoising steps: more is slower and finer.")
    guidance_scale: float = Field(9.0, ge=0.0, le=50.0, description="How strongly to follow the prompt.")
    negative_prompt: str | None = Field(None, description="What to avoid.")
    seed: int | None = Field(
        None, ge=0, le=2**53 - 1,
        description="Same seed and inputs, same video (and a cached answer for a repeat). Omitted: random.")
    fit: FitMode = Field(FitMode.crop, description="crop: fill the frame and cut edges; pad: keep all, add bars.")


class GenerateRequest(VideoParams):
    image_base64: str = Field(
        ..., min_length=1,
        description="The input image (PNG, JPEG, WebP, ...) in base64; a data: URL prefix and line breaks are fine.")


class GenerateResponse(BaseModel):
    success: bool = Field(True, description="True when a video was made.")
    message: str = Field(..., description="What happened, for people.")
    video_path: str = Field(..., description="Path of the MP4 under the gateway, e.g. outputs/abc.mp4.")
    video_url: str = Field(..., description="Absolute URL to download the MP4.")
    inference_time: float = Field(..., description="Seconds from accepting the request to the encoded video.")
    seed: int = Field(..., description="Seed used; send it again to reproduce the video.")
    width: int
    height: int
    num_frames: int
    fps: int
    cached: bool = Field(False, description="True when a seeded repeat was answered from the result cache.")


class ErrorResponse(BaseModel):
    """Every error has this shape, whatever its HTTP status."""

    success: bool = Field(False)
    message: str = Field(..., description="What went wrong and how to fix it.")
    video_path: None = None
    video_url: None = None
    inference_time: None = None


class HealthStatus(str, Enum):
    """``/healthz`` answers ok while the process lives; ``/readyz`` one of the others."""

    ok = "ok"
    starting = "starting"  # the model has not been ready yet since the gateway started
    ready = "ready"
    degraded = "degraded"  # it was ready, and Triton or the job store is away now (message says which)
    draining = "draining"  # shutting down: finishing or handing back its jobs, taking no new work


class HealthResponse(BaseModel):
    status: HealthStatus
    message: str = Field("", description="Why it is not ready, for people.")


# --- asynchronous jobs ---

class JobRequest(GenerateRequest):
    callback_url: str | None = Field(
        None, max_length=2048,
        description="POSTed the job when it ends (signed per Standard Webhooks). Private addresses are refused.")


class JobStatus(str, Enum):
    """Where a job is; the legal moves between these are in ``gateway/jobs/records.py``."""

    queued = "queued"
    running = "running"
    cancelling = "cancelling"  # running, asked to stop; its worker cancels the Triton request
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def final(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class JobErrorView(BaseModel):
    status: int = Field(..., description="The HTTP status the same failure has on /api/v1/generate.")
    message: str


class JobProgressView(BaseModel):
    step: int = Field(..., description="Denoising steps done.")
    total: int
    fraction: float


class DeliveryAttemptView(BaseModel):
    at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: int


class WebhookView(BaseModel):
    url: str
    state: str = Field(..., description="pending, delivering, delivered or failed.")
    attempts: list[DeliveryAttemptView]


class JobResponse(BaseModel):
    job_id: str
    status: JobStatus
    message: str
    status_url: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: JobProgressView | None = Field(None, description="While running (and after): denoising step of total.")
    result: GenerateResponse | None = Field(None, description="What /api/v1/generate answers, once succeeded.")
    error: JobErrorView | None = Field(None, description="Why it failed or was cancelled.")
    attempts: int = Field(0, description="Times a worker started it (more than 1 after a restart).")
    webhook: WebhookView | None = None


class JobListResponse(BaseModel):
    jobs: list[JobResponse]
    next_offset: int | None = Field(None, description="Pass as offset for the next page; null on the last.")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Fields every item starts from (e.g. one image_base64 for all).")
    items: list[dict[str, Any]] = Field(
        ..., min_length=1, description="Each a job request; its fields override the defaults.")
    callback_url: str | None = Field(None, max_length=2048, description="Default callback for every item.")


class BatchItemResult(BaseModel):
    index: int
    job: JobResponse | None = None
    error: JobErrorView | None = None


class BatchResponse(BaseModel):
    accepted: int
    rejected: int
    items: list[BatchItemResult]
