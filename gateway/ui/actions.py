"""What the page's buttons do, on the gateway's own services: submit, follow, cancel, list.

Each handler acts as the signed-in key (``request.username``, set from the session cookie by
``mount.py``), draws from the same rate budget as the API, and turns the API's errors into the
same messages; anything unexpected is logged and shown as one line, never a stack trace."""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import PIL.Image
from fastapi import FastAPI
from gradio.utils import get_upload_folder
from pydantic import ValidationError

from gateway.edge.rate_limit import SUBMISSIONS, spend
from gateway.edge.state import EdgeServices
from gateway.errors import ApiError, InvalidFieldError, InvalidImageError
from gateway.jobs.records import Job, JobEvent
from gateway.jobs.retention import remove_files_older_than
from gateway.jobs.service import JobService
from gateway.jobs.views import JobViews
from gateway.schemas import JobRequest, JobResponse, JobStatus, OutputFormat, VideoParams
from gateway.tenants.schemas import KeyUsage
from gateway.tenants.usage import month_so_far
from gateway.ui.texts import text

logger = logging.getLogger("gateway.ui")
GALLERY_SIZE = 12
INPUTS_FOLDER = "i2v-inputs"  # beside Gradio's uploads: the picture of each job the UI submitted


def owner_tag(owner: str) -> str:
    """Part of a kept picture's name that says whose it is: the file routes serve it to that key only."""
    return hashlib.sha256(owner.encode()).hexdigest()[:16]
BODY_ROOM = 16 * 1024  # the JSON around image_base64 in a request body
OUTPUT_FORMATS = [fmt.value for fmt in OutputFormat]


@dataclass(frozen=True)
class FormValues:
    """The form as the page sends it, in the order of ``page.FORM_FIELDS``."""

    image: str | None
    prompt: str
    negative_prompt: str
    resolution: str
    num_frames: float
    fps: float
    steps: float
    guidance_scale: float
    seed: float | None
    random_seed: bool
    fit: str
    output_format: str | None = None

    def job_request(self, image_base64: str) -> JobRequest:
        fields: dict[str, Any] = {
            "image_base64": image_base64, "prompt": self.prompt, "resolution": self.resolution,
            "num_frames": int(self.num_frames), "fps": int(self.fps), "steps": int(self.steps),
            "guidance_scale": float(self.guidance_scale), "fit": self.fit,
            "negative_prompt": self.negative_prompt.strip() or None,
            "seed": None if self.random_seed or self.seed is None else int(self.seed),
        }
        if self.output_format:
            fields["output_format"] = self.output_format
        return JobRequest.model_validate(fields)


def form_from_params(params: VideoParams, seed_used: int | None) -> list[Any]:
    """The form's values (without the image) for a job's parameters: the gallery's "reuse". The
    seed is the one the video was made with, Random unticked, so the same video comes out again
    (what AUTOMATIC1111's "reuse seed" and Replicate's "tweak" do)."""
    seed = params.seed if params.seed is not None else seed_used
    values: list[Any] = [params.prompt, params.negative_prompt or "", params.resolution.value, params.num_frames,
                         params.fps, params.steps, params.guidance_scale, seed,
                         seed is None, params.fit.value, params.output_format.value]
    return values


@dataclass(frozen=True)
class GalleryItem:
    view: JobResponse
    params: VideoParams
    video: Path
    thumbnail: Path  # the poster (first frame), else the video itself
    image: Path | None  # the picture it was made from, while the UI keeps it


ACTIVE = (JobStatus.queued, JobStatus.running, JobStatus.cancelling)


class UiActions:
    def __init__(self, app: FastAPI) -> None:
        self.app = app  # the gateway's app: its services exist only once its lifespan has started

    @property
    def jobs(self) -> JobService:
        return self.app.state.services.jobs

    @property
    def views(self) -> JobViews:
        return self.app.state.services.views

    @property
    def edge(self) -> EdgeServices:
        return self.app.state.edge

    def base_url(self, request: gr.Request) -> str:
        """Where the browser reaches this gateway (for video_url), as the API's BaseUrl does."""
        configured = self.edge.settings.public_base_url
        if configured:
            return configured
        scheme = getattr(getattr(request, "url", None), "scheme", None) or "http"
        return f"{scheme}://{request.headers.get('host', 'localhost')}"

    @property
    def inputs_dir(self) -> Path:
        """Where the UI keeps the picture of each of its jobs (for the gallery's reuse), beside
        Gradio's uploads: served only to signed-in pages, and deleted after I2V_RETENTION_S."""
        return Path(os.path.realpath(get_upload_folder())) / INPUTS_FOLDER

    def kept_input(self, job_id: str) -> Path | None:
        found = sorted(self.inputs_dir.glob(f"{job_id}.*")) if self.inputs_dir.is_dir() else []
        return found[0] if found else None

    def keep_input(self, job: Job, upload: str) -> None:
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        suffix = Path(upload).suffix.lower() or ".png"
        shutil.copyfile(upload, self.inputs_dir / f"{job.id}.{owner_tag(job.owner)}{suffix}")

    def forget_old_inputs(self) -> None:
        if self.inputs_dir.is_dir():
            remove_files_older_than(self.inputs_dir, time.time() - self.edge.settings.retention_s)

    def upload_problem(self, path: str, language: str) -> str | None:
        """Why the API would refuse this picture, in plain words, at upload time; None if it would
        not. The limits are the API's: I2V_MAX_IMAGE_BYTES, the body limit after base64, pixels."""
        size = os.path.getsize(path)  # FileNotFoundError: an upload deleted after I2V_RETENTION_S
        settings = self.edge.settings
        limit = min(settings.max_image_bytes, (settings.max_body_bytes - BODY_ROOM) * 3 // 4)
        if size > limit:
            return text(language, "image_too_big").format(size=_megabytes(size), limit=_megabytes(limit))
        try:
            with PIL.Image.open(path) as image:
                width, height = image.size
        except (OSError, ValueError, PIL.Image.DecompressionBombError):
            return text(language, "not_an_image")
        if width * height > settings.max_image_pixels:
            return text(language, "image_too_many_pixels").format(
                width=width, height=height, limit=f"{settings.max_image_pixels / 1e6:g}")
        return None

    async def active_job(self, request: gr.Request) -> Job | None:
        """The key's newest job still queued or running (from this page, another tab or the API):
        what a reloaded page follows."""
        jobs, _ = await self.jobs.list(request.username or "", 0, 20)
        return next((job for job in jobs if job.status in ACTIVE), None)

    async def submit(self, form: FormValues, language: str, request: gr.Request) -> Job:
        """The stored job for the form, or an ``ApiError`` with the API's message."""
        if not form.image:
            raise InvalidImageError(text(language, "no_image"))
        if not form.prompt.strip():
            raise InvalidFieldError(text(language, "no_prompt"))
        caller = request.username or ""
        try:
            problem = self.upload_problem(form.image, language)  # the API's limits, in plain words
            if problem is not None:
                raise InvalidImageError(problem)
            image = base64.b64encode(Path(form.image).read_bytes()).decode()
            body = form.job_request(image)
        except FileNotFoundError:  # uploads are deleted after I2V_RETENTION_S (page.py)
            raise InvalidImageError(text(language, "upload_expired")) from None
        except ValidationError as exc:
            raise InvalidFieldError(plain_validation(exc, language)) from None
        stored_key = await self.app.state.services.tenants.usable(caller)
        if stored_key is not None:
            await self.app.state.services.tenants.admit(stored_key)  # a stored key's quotas, as on the API
        await spend(self.edge.rate_limiter, SUBMISSIONS, caller)  # the API's budget: one per key for both
        job, _ = await self.jobs.submit(body, caller, self.base_url(request))
        logger.info("job %s submitted from the web UI", job.id)
        self.keep_input(job, form.image)
        return job

    async def follow(self, job: Job) -> AsyncIterator[tuple[JobEvent, JobResponse | None]]:
        """Each event of the job (with its place in the queue while it waits: ``watch``), and the
        job's view once it has ended."""
        async for event in self.jobs.watch(job.id):
            final = event.type in (JobStatus.succeeded.value, JobStatus.failed.value, JobStatus.cancelled.value)
            yield event, self.views.job(await self.jobs.get(job.id, job.owner)) if final else None

    async def cancel(self, job_id: str, request: gr.Request) -> JobResponse:
        return self.views.job(await self.jobs.cancel(job_id, request.username or ""))

    async def usage(self, request: gr.Request) -> KeyUsage | None:
        """The signed-in key's work this month so far and its quotas, as ``GET /api/v1/usage``
        answers it; None when the store cannot say now (logged: the page works on without it)."""
        since, until = month_so_far()
        try:
            return await self.app.state.services.tenants.own_report(request.username or "", since, until)
        except Exception:  # noqa: BLE001 - usage is shown beside the work, never in its way
            logger.warning("usage of %s not read for the web UI", request.username, exc_info=True)
            return None

    async def recent(self, request: gr.Request, page: int = 0) -> tuple[list[GalleryItem], bool]:
        """One page of the key's succeeded videos, newest first, and whether older ones follow."""
        self.forget_old_inputs()
        caller = request.username or ""
        outputs = self.app.state.services.outputs.directory
        wanted, offset = (page + 1) * GALLERY_SIZE + 1, 0
        found: list[GalleryItem] = []
        while len(found) < wanted:
            jobs, next_offset = await self.jobs.list(caller, offset, 100)
            for job in jobs:
                video = outputs / job.result.video_file if job.result is not None else None
                if job.result is None or video is None or not video.is_file():
                    continue
                poster = outputs / job.result.poster_file if job.result.poster_file else None
                found.append(GalleryItem(self.views.job(job), job.params, video,
                                         poster if poster is not None and poster.is_file() else video,
                                         self.kept_input(job.id)))
            if next_offset is None:
                break
            offset = next_offset
        start = page * GALLERY_SIZE
        return found[start:start + GALLERY_SIZE], len(found) > start + GALLERY_SIZE


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.3g}"  # 25, 20.5, 0.03


def plain_validation(exc: ValidationError, language: str) -> str:
    """A form value out of range, named by its label, in words: not "invalid request: seed:
    Input should be ..."."""
    parts = []
    for error in exc.errors():
        name = str(error.get("loc", ("",))[0])
        label = text(language, FIELD_LABELS[name]) if name in FIELD_LABELS else name
        context = error.get("ctx") or {}
        field = JobRequest.model_fields.get(name)
        low, high = context.get("ge", context.get("gt")), context.get("le", context.get("lt"))
        if field is not None and (low is None or high is None):
            for bound in field.metadata:
                low = getattr(bound, "ge", None) if low is None else low
                high = getattr(bound, "le", None) if high is None else high
        whole = field is not None and "int" in str(field.annotation)
        problem = (text(language, "whole_number" if whole else "out_of_range")
                   .format(low=low, high=high) if low is not None and high is not None else error.get("msg", ""))
        parts.append(text(language, "field_problem").format(field=label, problem=problem))
    return " ".join(parts)


# Form fields by the API's names, for messages (the labels in texts.py).
FIELD_LABELS = {"image_base64": "image", "prompt": "prompt", "negative_prompt": "negative_prompt",
                "resolution": "resolution", "num_frames": "frames", "fps": "fps", "steps": "steps",
                "guidance_scale": "guidance", "seed": "seed", "fit": "fit", "output_format": "output_format"}


def describe_error(exc: Exception) -> str:
    """The caller's message of an API error; one line for anything else (the log has the rest)."""
    if isinstance(exc, ApiError):
        return exc.message
    logger.exception("web UI action failed")
    return "internal error; the gateway log has the details"


class EtaClock:
    """Seconds left from the pace of the steps seen so far, when the job view gives no eta_s."""

    def __init__(self) -> None:
        self.first: tuple[float, int] | None = None

    def eta_s(self, step: int, total: int, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        if self.first is None or step < self.first[1]:
            self.first = (now, step)
            return None
        started, first_step = self.first
        if step == first_step:
            return None
        return (now - started) / (step - first_step) * (total - step)


def progress_html(language: str, status: str, step: int | None = None, total: int | None = None,
                  eta_s: float | None = None, queue_position: int | None = None, message: str = "",
                  job_id: str = "") -> str:
    """The status line and the step bar; data- attributes let tests and scripts read it."""
    label = text(language, f"status_{status}") if f"status_{status}" in _STATUS_KEYS else status
    parts = [html.escape(label)]
    if queue_position is not None:
        parts.append(f"{html.escape(text(language, 'queue_position'))} {queue_position}")
    if step is not None and total:
        parts.append(f"{html.escape(text(language, 'step'))} {step}/{total}")
    if eta_s is not None:
        parts.append(html.escape(text(language, "eta").format(seconds=max(0, round(eta_s)))))
    if message and status in ("failed", "cancelled", "error"):
        parts.append(html.escape(message))
    bar = (f'<progress id="i2v-progress-bar" value="{step or 0}" max="{total}"></progress>'
           if total else "")
    return (f'<div id="i2v-status" data-status="{html.escape(status)}" data-step="{step or 0}" '
            f'data-total="{total or 0}" data-queue="{queue_position or ""}" data-job="{html.escape(job_id)}">{bar}'
            f'<span class="i2v-status-text">{" · ".join(parts)}</span></div>')


_STATUS_KEYS = {f"status_{s}" for s in ("idle", "queued", "running", "succeeded", "failed", "cancelled",
                                        "cancelling", "error")}


def usage_html(language: str, usage: KeyUsage | None) -> str:
    """This month's work of the signed-in key, and where it stands against each of its quotas
    (a reached one marked); data- attributes carry the numbers for tests and scripts."""
    if usage is None:
        return f'<div id="i2v-usage" data-state="unavailable">{html.escape(text(language, "usage_unavailable"))}</div>'
    totals = usage.totals
    summary = text(language, "usage_month").format(
        videos=totals.videos, frames=totals.frames, compute_units=f"{totals.compute_units:.1f}",
        model_seconds=f"{totals.model_seconds:.1f}", cache_hits=totals.cache_hits, failed=totals.failed)
    quotas = []
    for state in usage.quotas:
        reached = state.used >= state.limit
        line = text(language, f"quota_{state.quota}").format(
            used=f"{state.used:g}", limit=f"{state.limit:g}", resets=state.resets_at.strftime("%Y-%m-%d %H:%M UTC"))
        quotas.append(f'<li class="i2v-quota{" i2v-quota-reached" if reached else ""}" '
                      f'data-quota="{html.escape(state.quota)}" data-used="{state.used:g}" data-limit="{state.limit:g}"'
                      f'>{html.escape(line)}{html.escape(text(language, "quota_reached")) if reached else ""}</li>')
    return (f'<div id="i2v-usage" data-state="ok" data-videos="{totals.videos}" data-frames="{totals.frames}" '
            f'data-compute-units="{totals.compute_units:g}" data-cache-hits="{totals.cache_hits}" '
            f'data-failed="{totals.failed}"><span class="i2v-usage-summary">{html.escape(summary)}</span>'
            + (f'<ul class="i2v-quotas">{"".join(quotas)}</ul>' if quotas else "") + "</div>")


def result_html(language: str, view: JobResponse) -> str:
    """The player, its poster, the download link."""
    result = view.result
    if result is None:
        return ""
    url = html.escape(result.video_url)
    poster_url = getattr(result, "poster_url", None)
    poster = f' poster="{html.escape(poster_url)}"' if poster_url else ""
    if url.endswith((".mp4", ".webm")):
        media = f'<video id="i2v-video" src="{url}"{poster} controls loop autoplay muted playsinline></video>'
    elif url.endswith(".gif"):
        media = f'<img id="i2v-video" src="{url}" alt="">'
    else:
        media = ""
    poster_link = (f' · <a href="{html.escape(poster_url)}" target="_blank">{html.escape(text(language, "poster"))}</a>'
                   if poster_url else "")
    return (f'<div id="i2v-result">{media}<p><a id="i2v-download" href="{url}" download>'
            f'{html.escape(text(language, "download"))}</a>{poster_link}</p></div>')


def parameters_used(view: JobResponse, params: VideoParams) -> dict[str, Any]:
    used = params.model_dump(mode="json", exclude_none=True)
    if view.result is not None:
        used.update(seed=view.result.seed, width=view.result.width, height=view.result.height,
                    inference_time=view.result.inference_time, cached=view.result.cached)
    return {"job_id": view.job_id, **used}
