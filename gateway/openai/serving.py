"""The /v1 Videos API over the job service: each request translated into a native job request, each
job shown as OpenAI's Video object. No job path of its own: a video is a job, one id on both APIs."""

from __future__ import annotations

import asyncio
import base64
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.generation.spritesheet import spritesheet_jpeg
from gateway.jobs.queue import Place
from gateway.jobs.records import Job
from gateway.openai.errors import InvalidParamError, ModelNotFoundError, NotCompletedError, param_of
from gateway.openai.protocol import (
    Model,
    ModelList,
    RemixRequest,
    Video,
    VideoCreateRequest,
    VideoDeleted,
    VideoError,
    VideoList,
    VideoStatus,
)
from gateway.openai.references import image_base64
from gateway.schemas import JobRequest, JobStatus, OutputFormat, VideoParams
from gateway.services import Services

ALIASES = ("i2vgen-xl", "ali-vilab/i2vgen-xl")
MODEL_CREATED = 1703030400  # 2023-12-20, when I2VGen-XL's weights were published
OWNED_BY = "ali-vilab"
SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
DELETE_WAIT_S = 30.0  # a running video stops within a denoising step; delete waits that long for it
LIST_SCAN = 200  # jobs read at a time while a cursor list looks for its ``after``
MEDIA_TYPES = {OutputFormat.mp4: "video/mp4", OutputFormat.webm: "video/webm", OutputFormat.gif: "image/gif",
               OutputFormat.frames: "application/zip"}
STATUSES = {JobStatus.queued: VideoStatus.queued, JobStatus.running: VideoStatus.in_progress,
            JobStatus.cancelling: VideoStatus.in_progress, JobStatus.succeeded: VideoStatus.completed,
            JobStatus.failed: VideoStatus.failed, JobStatus.cancelled: VideoStatus.failed}
ERROR_CODES = {400: "invalid_request", 413: "invalid_request", 422: "invalid_request", 502: "model_error",
               503: "model_unavailable", 504: "timeout"}


@dataclass(frozen=True)
class Content:
    """A file to send (``path``) or bytes made on request, with its media type."""

    media_type: str
    path: Path | None = None
    data: bytes | None = None



def _bounds(field: str) -> tuple[int, int]:
    """The native limits (ge, le) of an integer field of ``VideoParams``."""
    metadata = VideoParams.model_fields[field].metadata
    return (next(int(m.ge) for m in metadata if hasattr(m, "ge")),
            next(int(m.le) for m in metadata if hasattr(m, "le")))


FRAME_LIMITS = _bounds("num_frames")


def _seconds(frames: int, fps: int) -> str:
    return f"{frames / fps:.3g}"


class VideoServing:
    def __init__(self, services: Services) -> None:
        self.app = services
        self.settings = services.settings

    # --- models ---

    def models(self) -> ModelList:
        return ModelList(data=[self.model()])

    def model(self, name: str | None = None) -> Model:
        served = self.settings.triton_model
        if name is not None and name != served and name not in ALIASES:
            raise ModelNotFoundError(name, served)
        return Model(id=served, created=MODEL_CREATED, owned_by=OWNED_BY, aliases=list(ALIASES))

    # --- create ---

    async def create(self, fields: dict[str, Any], upload: bytes | None, owner: str, base_url: str,
                     idempotency_key: str | None, cancel_after_s: float | None) -> Video:
        try:
            request = VideoCreateRequest.model_validate(fields)
        except ValidationError as exc:
            raise _invalid(exc) from None
        if request.model is not None:
            self.model(request.model)
        body = await self.job_request(request, upload)
        job, _ = await self.app.jobs.submit(body, owner, base_url, idempotency_key, cancel_after_s, keep_input=True)
        return self.video(job, await self.app.jobs.place(job))

    async def job_request(self, request: VideoCreateRequest, upload: bytes | None) -> JobRequest:
        """The native job request that makes the same video (the README's mapping rules)."""
        native: dict[str, Any] = request.model_dump(
            exclude_none=True, exclude={"input_reference", "model", "size", "seconds", "num_inference_steps"})
        if request.num_inference_steps is not None:
            native["steps"] = request.num_inference_steps
        if request.size is not None:
            native["width"], native["height"] = self._size(request.size, await self.app.generation.max_pixels())
        fps = request.fps if request.fps is not None else VideoParams.model_fields["fps"].default
        if request.num_frames is None and request.seconds is not None:
            native["num_frames"] = self._frames(request.seconds, fps)
        native["image_base64"] = await image_base64(request.input_reference, upload, self.settings)
        try:
            return JobRequest.model_validate(native)
        except ValidationError as exc:
            raise _invalid(exc) from None

    @staticmethod
    def _size(size: str, limit: int) -> tuple[int, int]:
        match = SIZE.match(size)
        if match is None:
            raise InvalidParamError(f"size must be WIDTHxHEIGHT, e.g. 1280x704, not {size!r}", "size")
        width, height = int(match[1]), int(match[2])
        if width < 64 or height < 64 or width % 8 or height % 8:
            raise InvalidParamError(f"size {width}x{height}: each side must be a multiple of 8 and at least 64",
                                    "size")
        if width * height > limit:
            raise InvalidParamError(f"size {width}x{height} is {width * height} pixels; the model makes at most "
                                    f"{limit} (1280x704 fits)", "size")
        return width, height

    @staticmethod
    def _frames(seconds: str | float, fps: int) -> int:
        fewest, most = FRAME_LIMITS
        rule = (f"seconds x fps must be a whole number of frames from {fewest} to {most}: at {fps} fps, seconds "
                f"from {fewest / fps:g} to {most / fps:g} in steps of {1 / fps:g} (or send num_frames)")
        try:
            value = float(seconds)
        except ValueError:
            raise InvalidParamError(f"seconds must be a number, not {seconds!r}; {rule}", "seconds") from None
        frames = value * fps
        if not math.isfinite(frames):  # NaN, infinities, and 1e308 * fps overflowing to inf
            frames = -1.0
        if not fewest <= round(frames) <= most or abs(frames - round(frames)) > 1e-6:
            raise InvalidParamError(f"seconds {seconds!r}: {rule}", "seconds")
        return round(frames)

    async def remix(self, video_id: str, request: RemixRequest, owner: str, base_url: str,
                    idempotency_key: str | None) -> Video:
        """The source video's image and settings (its seed too) with a new prompt."""
        source = await self.app.jobs.get(video_id, owner)
        image = await self.app.jobs.load_input(video_id, owner)
        if image is None:
            raise InvalidParamError(f"video {video_id} was not made through /v1/videos, so its image was not "
                                    "kept; create a new video instead", "video_id")
        params = source.params.model_dump(exclude_none=True)
        params["prompt"] = request.prompt
        if source.params.seed is None and source.result is not None:
            params["seed"] = source.result.seed
        params.update(width=source.width, height=source.height,
                      image_base64=base64.b64encode(image).decode())
        params.pop("resolution", None)
        try:
            body = JobRequest.model_validate(params)
        except ValidationError as exc:
            raise _invalid(exc) from None
        job, _ = await self.app.jobs.submit(body, owner, base_url, idempotency_key, keep_input=True,
                                            remixed_from=source.id)
        return self.video(job, await self.app.jobs.place(job))

    # --- read, list, delete, content ---

    async def get(self, video_id: str, owner: str) -> Video:
        job = await self.app.jobs.get(video_id, owner)
        return self.video(job, await self.app.jobs.place(job))

    async def list(self, owner: str, after: str | None, limit: int, order: str) -> VideoList:
        """OpenAI's cursor list over the caller's jobs (the store keeps them newest first by offset):
        the ``limit`` videos after ``after`` in ``order``."""
        jobs: list[Job] = []
        offset: int | None = 0
        while offset is not None:  # the caller's jobs are bounded by retention; read them a page at a time
            page, offset = await self.app.jobs.list(owner, offset, LIST_SCAN)
            jobs.extend(page)
            if order == "desc" and (len(jobs) > limit if after is None else _holds_after(jobs, after, limit)):
                break  # enough for this page and to know whether another follows
        if order == "asc":
            jobs.reverse()
        start = 0
        if after is not None:
            ids = [job.id for job in jobs]
            if after not in ids:
                raise InvalidParamError(f"after: no video {after} among this key's videos", "after")
            start = ids.index(after) + 1
        page = jobs[start:start + limit]
        snapshot = await self.app.jobs.snapshot() if any(not job.status.final for job in page) else None
        data = [self.video(job, snapshot.place(job) if snapshot else None) for job in page]
        return VideoList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
                         has_more=len(jobs) > start + limit)

    async def delete(self, video_id: str, owner: str) -> VideoDeleted:
        """Cancel it if it still runs, wait for it to stop, then delete the record and its files."""
        job = await self.app.jobs.get(video_id, owner)
        if not job.status.final:
            job = await self.app.jobs.wait(await self.app.jobs.cancel(video_id, owner), DELETE_WAIT_S)
            if not job.status.final:
                raise NotCompletedError(f"video {video_id} is still stopping; delete it again in a few seconds")
        await self.app.jobs.delete(video_id, owner)
        return VideoDeleted(id=video_id)

    async def content(self, video_id: str, owner: str, variant: str) -> Content:
        job = await self.app.jobs.get(video_id, owner)
        if job.status is not JobStatus.succeeded or job.result is None:
            raise NotCompletedError(f"video {video_id} is {STATUSES[job.status].value}; its content is there "
                                    "once its status is completed")
        result = job.result
        video = self.app.outputs.directory / result.video_file
        if variant == "thumbnail":
            if result.poster_file is None:
                raise NotCompletedError(f"video {video_id} has no thumbnail (made before posters existed)")
            return Content("image/jpeg", path=self.app.outputs.directory / result.poster_file)
        if variant == "spritesheet":
            data = await asyncio.to_thread(spritesheet_jpeg, video, result.output_format)
            return Content("image/jpeg", data=data)
        return Content(MEDIA_TYPES[result.output_format], path=video)

    # --- the Video object ---

    def video(self, job: Job, place: Place | None = None) -> Video:
        status = STATUSES[job.status]
        progress = 0
        if status is VideoStatus.completed:
            progress = 100
        elif job.progress is not None and job.progress.total > 0:
            progress = min(99, job.progress.step * 100 // job.progress.total)  # 100 once the file is there
        error = None
        if job.status is JobStatus.cancelled:
            error = VideoError(code="cancelled", message=job.message)
        elif job.status is JobStatus.failed:
            error = VideoError(code=ERROR_CODES.get(job.error_status or 500, "internal_error"), message=job.message)
        finished = None if job.finished_at is None else int(job.finished_at)
        return Video(
            id=job.id, model=self.settings.triton_model, status=status, progress=progress,
            created_at=int(job.created_at), completed_at=finished,
            expires_at=None if job.finished_at is None else int(job.finished_at + self.settings.retention_s),
            size=f"{job.width}x{job.height}", seconds=_seconds(job.params.num_frames, job.params.fps),
            prompt=job.params.prompt, error=error, remixed_from_video_id=job.remixed_from,
            queue_position=place.queue_position if place else None, eta_s=place.eta_s if place else None,
            seed=job.result.seed if job.result is not None else job.params.seed)


def _holds_after(jobs: list[Job], after: str, limit: int) -> bool:
    for index, job in enumerate(jobs):
        if job.id == after:
            return len(jobs) > index + limit
    return False


def _invalid(exc: ValidationError) -> InvalidParamError:
    """Pydantic's first complaint as a 400 naming the /v1 field."""
    errors = exc.errors()
    param = param_of(errors[0]["loc"]) if errors else None
    message = "; ".join(f"{param_of(e.get('loc', ())) or 'body'}: {e.get('msg', 'invalid')}" for e in errors)
    return InvalidParamError(f"invalid request: {message}", param)
