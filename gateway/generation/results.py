"""The one type of a made video, from the model's answer to the cache, the job record, the REST
response and the webhook payload; the response bodies are views of it (``response``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway.generation.outputs import OutputStore
from gateway.schemas import GenerateResponse


class VideoResult(BaseModel):
    video_file: str = Field(..., description="Name of the MP4 inside the outputs folder.")
    seed: int
    width: int
    height: int
    num_frames: int
    fps: int
    inference_time: float = Field(..., description="Seconds from accepting the request to the encoded video.")
    cached: bool = False

    @property
    def message(self) -> str:
        return "video served from the cache" if self.cached else "video generated"

    def response(self, outputs: OutputStore, base_url: str) -> GenerateResponse:
        """The REST body of this result; ``base_url`` is where ``/outputs/`` is served."""
        path = outputs.directory / self.video_file
        return GenerateResponse(
            success=True, message=self.message, video_path=outputs.relative_path(path),
            video_url=outputs.url(base_url, path), inference_time=round(self.inference_time, 3), seed=self.seed,
            width=self.width, height=self.height, num_frames=self.num_frames, fps=self.fps, cached=self.cached)
