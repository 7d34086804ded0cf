"""The one type of a made video, from the model's answer to the cache, the job record, the REST
response and the webhook payload; the response bodies are views of it (``response``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway.generation.outputs import OutputStore
from gateway.schemas import GenerateResponse, OutputFormat


class VideoResult(BaseModel):
    video_file: str = Field(..., description="Name of the video (or zip of frames) inside the outputs folder.")
    seed: int
    width: int
    height: int
    num_frames: int
    fps: int
    inference_time: float = Field(..., description="Seconds from accepting the request to the encoded video.")
    cached: bool = False
    # Defaults keep records stored before formats and posters existed readable: those were MP4s
    # without a poster.
    output_format: OutputFormat = OutputFormat.mp4
    poster_file: str | None = Field(None, description="Name of the first frame as JPEG inside the outputs folder.")
    model_seconds: float = Field(0.0, description="Time of the Triton inference call (usage per key, issue 24).")

    @property
    def message(self) -> str:
        return "video served from the cache" if self.cached else "video generated"

    @property
    def files(self) -> list[str]:
        """The names this result owns in the outputs folder."""
        return [self.video_file] if self.poster_file is None else [self.video_file, self.poster_file]

    def response(self, outputs: OutputStore, base_url: str) -> GenerateResponse:
        """The REST body of this result; ``base_url`` is where ``/outputs/`` is served."""
        path = outputs.directory / self.video_file
        poster = None if self.poster_file is None else outputs.directory / self.poster_file
        return GenerateResponse(
            success=True, message=self.message, video_path=outputs.relative_path(path),
            video_url=outputs.url(base_url, path), inference_time=round(self.inference_time, 3), seed=self.seed,
            width=self.width, height=self.height, num_frames=self.num_frames, fps=self.fps, cached=self.cached,
            output_format=self.output_format,
            poster_path=None if poster is None else outputs.relative_path(poster),
            poster_url=None if poster is None else outputs.url(base_url, poster))
