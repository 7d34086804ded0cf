"""The REST contract (DESIGN.md, contract 1): request and response bodies."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError


class Resolution(str, Enum):
    """Output sizes; width x height."""

    p256 = "256p"
    p512 = "512p"
    p768 = "768p"
    p1024 = "1024p"
    p720 = "720p"  # 1280x704: the size I2VGen-XL was trained at (its pipeline's default)

    @property
    def size(self) -> tuple[int, int]:
        return RESOLUTION_SIZES[self]


RESOLUTION_SIZES = {
    Resolution.p256: (256, 256),
    Resolution.p512: (512, 512),
    Resolution.p768: (768, 768),
    Resolution.p1024: (1024, 576),
    Resolution.p720: (1280, 704),
}


class FitMode(str, Enum):
    """How an image of another aspect ratio is fitted to the output size."""

    crop = "crop"  # scale to cover, cut the centre (upstream I2VGen-XL behaviour)
    pad = "pad"  # scale to fit inside, pad with black bars


class OutputFormat(str, Enum):
    """The file a video is delivered as; every format also gets a JPEG poster (the first frame)."""

    mp4 = "mp4"  # H.264, yuv420p, index first: plays everywhere
    webm = "webm"  # VP9, yuv420p: browsers
    gif = "gif"  # animated, looping; at most 50 fps (GIF delays are whole centiseconds)
    frames = "frames"  # a zip of PNG frames, frame_0000.png ...


class VideoParams(BaseModel):
    """Everything about the video except the image; a job stores these."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, description="What should happen in the video (not only whitespace).")
    resolution: Resolution = Field(
        Resolution.p512, description="256p, 512p, 768p (square), 1024p (1024x576) or 720p (1280x704, the size "
                                     "I2VGen-XL was trained at). width and height together override it.")
    # Free sizes (issue 21). Left out of stored jobs while unset, like step_cache_interval.
    width: int | None = Field(
        None, ge=64, le=4096, multiple_of=8, strict=True, exclude_if=lambda value: value is None,
        description="Output width in pixels, a multiple of 8 (at least 64), sent with height; overrides "
                    "resolution. width x height is limited by the model (I2V_MAX_VIDEO_PIXELS).")
    height: int | None = Field(
        None, ge=64, le=4096, multiple_of=8, strict=True, exclude_if=lambda value: value is None,
        description="Output height in pixels, a multiple of 8 (at least 64), sent with width.")
    num_frames: int = Field(16, ge=8, le=32, strict=True,
                            description="Frames in the video (the model was trained on 16 and 32).")
    fps: int = Field(8, ge=1, le=60, strict=True, description="Frames per second of the MP4 file.")
    steps: int = Field(50, ge=1, le=150, strict=True, description="Denoising steps: more is slower and finer.")
    guidance_scale: float = Field(9.0, ge=0.0, le=50.0, strict=True, allow_inf_nan=False,
                                  description="How strongly to follow the prompt (a finite number).")
    negative_prompt: str | None = Field(None, description="What to avoid.")
    seed: int | None = Field(
        None, ge=0, le=2**53 - 1, strict=True,
        description="Same seed and inputs, same video (and a cached answer for a repeat). Omitted: random.")
    fit: FitMode = Field(FitMode.crop, description="crop: fill the frame and cut edges; pad: keep all, add bars.")
    # Left out of stored jobs while unset, so replicas of the version before it still read them.
    step_cache_interval: int | None = Field(
        None, ge=0, le=150, strict=True, exclude_if=lambda value: value is None,
        description="Step caching (DeepCache): the deep UNet blocks run every N steps and are reused between, "
                    "faster but the frames change (judge on your weights first). 0 or 1: off. Omitted: the model's "
                    "configured default (off as shipped).")
    output_format: OutputFormat = Field(
        OutputFormat.mp4, description="mp4 (H.264), webm (VP9), gif (animated, looping) or frames (a zip of PNGs "
                                      "named frame_0000.png ...). A JPEG poster of the first frame comes with each.")

    @model_validator(mode="after")
    def _width_with_height(self) -> VideoParams:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together: send both, or neither and a resolution")
        return self

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the video: the free size when given, else the resolution's."""
        if self.width is not None and self.height is not None:
            return self.width, self.height
        return self.resolution.size


class GenerateRequest(VideoParams):
    image_base64: str = Field(
        ..., min_length=1,
        description="The input image (PNG, JPEG, WebP, ...) in base64; a data: URL prefix and line breaks are fine.")
    cancel_after_s: float | None = Field(
        None, gt=0, le=86400, strict=True, allow_inf_nan=False,
        description="Deadline in seconds from submission: past it the request is cancelled and the model stops "
                    "within a denoising step. The Cancel-After header (e.g. '90s', '5m') does the same; "
                    "with both, the earlier deadline wins.")

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, prompt: str) -> str:
        # Checked on what callers send, not on stored jobs (VideoParams), which were all accepted once.
        if not prompt.strip():
            raise PydanticCustomError("blank_prompt", "must not be empty or only whitespace")
        return prompt


class GenerateResponse(BaseModel):
    success: bool = Field(True, description="True when a video was made.")
    message: str = Field(..., description="What happened, for people.")
    video_path: str = Field(
        ..., description="Path of the file in the requested output_format under the gateway, e.g. outputs/abc.mp4.")
    video_url: str = Field(..., description="Absolute URL to download that file (MP4, WebM, GIF or zip of PNGs).")
    inference_time: float = Field(..., description="Seconds from accepting the request to the encoded video.")
    seed: int = Field(..., description="Seed used; send it again to reproduce the video.")
    width: int
    height: int
    num_frames: int
    fps: int
    cached: bool = Field(False, description="True when a seeded repeat was answered from the result cache.")
    output_format: OutputFormat = Field(OutputFormat.mp4, description="The format of the file at video_url.")
    poster_path: str | None = Field(
        None, description="Path of the poster, the first frame as JPEG, e.g. outputs/abc.jpg (null for videos "
                          "made before posters existed).")
    poster_url: str | None = Field(None, description="Absolute URL to download the poster.")


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

class WebhookEvent(str, Enum):
    """What a job's callback_url is told about; each is one signed POST."""

    start = "start"  # a worker started the job (once)
    progress = "progress"  # denoising progress, at most one every 2 s
    completed = "completed"  # the job ended: succeeded, failed or cancelled


class JobRequest(GenerateRequest):
    callback_url: str | None = Field(
        None, max_length=2048, json_schema_extra={"format": "uri"},
        description="POSTed the job when it ends (signed per Standard Webhooks). Private addresses are refused.")
    webhook_events: list[WebhookEvent] = Field(
        default_factory=lambda: [WebhookEvent.completed], min_length=1, max_length=3,
        description="Which events POST to callback_url: completed (the default), start, progress.")

    @model_validator(mode="after")
    def _events_need_a_callback(self) -> JobRequest:
        # Asked for events with nowhere to send them: surely a mistake, not a silent no-op.
        if "webhook_events" in self.model_fields_set and not self.callback_url:
            raise PydanticCustomError("webhook_events_without_callback",
                                      "webhook_events needs a callback_url to send the events to")
        return self


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
    event: str = Field("completed", description="The event sent: start, progress or completed.")
    status_code: int | None = None
    error: str | None = None
    duration_ms: int


class WebhookView(BaseModel):
    url: str
    events: list[str] = Field(default_factory=lambda: ["completed"], description="The events asked for.")
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
    queue_position: int | None = Field(
        None, description="While queued: 1 when the job starts next (keys are served in turn).")
    eta_s: float | None = Field(
        None, description="While queued or running: estimated seconds until it ends, from the speed of "
                          "the jobs running now; null until there is something to measure.")
    result: GenerateResponse | None = Field(None, description="What /api/v1/generate answers, once succeeded.")
    error: JobErrorView | None = Field(None, description="Why it failed or was cancelled.")
    attempts: int = Field(0, description="Times a worker started it (more than 1 after a restart).")
    lost_workers: int = Field(
        0, description="Starts lost with their worker (a killed gateway); it fails after I2V_JOB_MAX_ATTEMPTS "
                       "of these. Waits for the model or the store never count.")
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
    callback_url: str | None = Field(None, max_length=2048, json_schema_extra={"format": "uri"},
                                     description="Default callback for every item.")


class BatchItemResult(BaseModel):
    index: int
    job: JobResponse | None = None
    error: JobErrorView | None = None


class BatchResponse(BaseModel):
    accepted: int
    rejected: int
    items: list[BatchItemResult]
