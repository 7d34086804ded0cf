"""The REST contract (DESIGN.md, contract 1): request and response bodies."""

from __future__ import annotations

from enum import Enum

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


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_base64: str = Field(
        ..., min_length=1,
        description="The input image (PNG, JPEG, WebP, ...) in base64; a data: URL prefix and line breaks are fine.")
    prompt: str = Field(..., min_length=1, description="What should happen in the video.")
    resolution: Resolution = Field(Resolution.p512, description="256p, 512p, 768p (square) or 1024p (1024x576).")
    num_frames: int = Field(16, ge=8, le=32, description="Frames in the video (the model was trained on 16 and 32).")
    fps: int = Field(8, ge=1, le=60, description="Frames per second of the MP4 file.")
    steps: int = Field(50, ge=1, le=150, description="Denoising steps: more is slower and finer.")
    guidance_scale: float = Field(9.0, ge=0.0, le=50.0, description="How strongly to follow the prompt.")
    negative_prompt: str | None = Field(None, description="What to avoid.")
    seed: int | None = Field(None, ge=0, le=2**53 - 1, description="Same seed and inputs, same video. Omitted: random.")
    fit: FitMode = Field(FitMode.crop, description="crop: fill the frame and cut edges; pad: keep all, add bars.")


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


class ErrorResponse(BaseModel):
    """Every error has this shape, whatever its HTTP status."""

    success: bool = Field(False)
    message: str = Field(..., description="What went wrong and how to fix it.")
    video_path: None = None
    video_url: None = None
    inference_time: None = None


class HealthStatus(str, Enum):
    ok = "ok"
    ready = "ready"
    not_ready = "not_ready"


class HealthResponse(BaseModel):
    status: HealthStatus
    message: str = ""
