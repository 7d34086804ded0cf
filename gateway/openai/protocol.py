"""The OpenAI Videos API contract on ``/v1`` (issue 21): request and response bodies.

Shaped as OpenAI defines its Video object and errors, so the ``openai`` SDKs parse them; this
service's own fields ride beside them (at the top level, where an SDK's ``extra_body`` puts them).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.schemas import FitMode, OutputFormat, WebhookEvent


class ImageReference(BaseModel):
    """OpenAI's reference object: an image URL (https or data:), or a file id this service has no store for."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(None, description="An http(s) URL the gateway fetches, or a data: URL.")
    file_id: str | None = Field(None, description="Not supported here (there is no Files API): a 400.")


class VideoCreateRequest(BaseModel):
    """``POST /v1/videos`` as JSON, or as multipart/form-data with ``input_reference`` as a file part
    (where every other field arrives as a string)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, description="What should happen in the video.")
    input_reference: ImageReference | str | None = Field(
        None, description="The image to animate (required): a file part in multipart, or {\"image_url\": ...}, "
                          "or a plain http(s) or data: URL string.")
    model: str | None = Field(None, description="The served model's id or one of its aliases (GET /v1/models).")
    size: str | None = Field(None, description="WIDTHxHEIGHT, each a multiple of 8 and at least 64, e.g. 1280x704. "
                                               "Omitted: 512x512.")
    seconds: str | float | None = Field(
        None, description="Length; times fps (8 unless sent) gives the frames, 8 to 32 (1 to 4 s at 8 fps). "
                          "Omitted: 16 frames. num_frames wins when both are sent.")
    # This service's own fields (the native API's, with its limits).
    negative_prompt: str | None = None
    seed: int | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = Field(None, description="Denoising steps (the native API's steps).")
    fps: int | None = None
    num_frames: int | None = None
    fit: FitMode | None = None
    output_format: OutputFormat | None = None
    step_cache_interval: int | None = None
    callback_url: str | None = None
    webhook_events: list[WebhookEvent] | None = None
    cancel_after_s: float | None = None


class RemixRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, description="The new prompt; image and settings are the source video's.")


class VideoStatus(str, Enum):
    queued = "queued"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"


class VideoError(BaseModel):
    code: str = Field(..., description="cancelled, timeout, model_error, invalid_request or internal_error.")
    message: str


class Video(BaseModel):
    id: str = Field(..., description="The job id: the same video is /api/v1/jobs/{id}.")
    object: Literal["video"] = "video"
    model: str
    status: VideoStatus
    progress: int = Field(..., ge=0, le=100, description="Percent of the denoising steps done.")
    created_at: int
    completed_at: int | None = Field(None, description="When it ended (completed or failed).")
    expires_at: int | None = Field(None, description="When its files and record are deleted (I2V_RETENTION_S).")
    size: str = Field(..., description="WIDTHxHEIGHT.")
    seconds: str = Field(..., description="num_frames / fps.")
    prompt: str | None = None
    error: VideoError | None = Field(None, description="Why it failed; a cancelled video fails with code cancelled.")
    remixed_from_video_id: str | None = None
    queue_position: int | None = Field(None, description="While queued: 1 when it starts next.")
    eta_s: float | None = Field(None, description="While queued or running: estimated seconds to the end.")
    seed: int | None = Field(None, description="The seed used, once completed; send it again to reproduce.")


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    aliases: list[str] = Field(default_factory=list, description="Other names accepted as model.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(..., description="invalid_request_error, authentication_error, permission_error, "
                                       "not_found_error, conflict_error, rate_limit_error or server_error.")
    param: str | None = Field(None, description="The request field at fault, when there is one.")
    code: str | None = None


class ErrorBody(BaseModel):
    """Every error on /v1 has this shape (OpenAI's), whatever its status."""

    error: ErrorDetail


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return ErrorBody(error=ErrorDetail(message=message, type=type_, param=param, code=code)).model_dump()
