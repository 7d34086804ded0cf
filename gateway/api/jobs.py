"""Routes of asynchronous jobs and batches: thin handlers over ``JobService``."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from gateway.api.deps import App, BaseUrl, CancelAfter, RateLimitedCaller, ReadCaller
from gateway.edge.signing import require_signature
from gateway.errors import (
    ConflictError,
    InvalidEventIdError,
    InvalidImageError,
    MalformedBodyError,
    NotFoundError,
    QueueFullError,
    responses_for,
)
from gateway.jobs.service import FINAL_TYPES
from gateway.schemas import (
    BatchItemResult,
    BatchRequest,
    BatchResponse,
    JobErrorView,
    JobListResponse,
    JobRequest,
    JobResponse,
)

router = APIRouter(prefix="/api/v1", tags=["jobs"], dependencies=[Depends(require_signature)])
HEARTBEAT_S = 5  # an SSE comment this often keeps proxies from closing a quiet stream
MAX_PREFER_WAIT_S = 60  # longer waits belong to the event stream, not to an open POST


@router.post("/jobs", status_code=202, response_model=JobResponse,
             responses=responses_for(MalformedBodyError, InvalidImageError, ConflictError, QueueFullError))
async def submit_job(body: JobRequest, response: Response, app: App, base_url: BaseUrl, caller: RateLimitedCaller,
                     cancel_after_s: CancelAfter, idempotency_key: Annotated[str | None, Header()] = None,
                     prefer: Annotated[str | None, Header(description="RFC 7240: 'wait=N' (seconds, at most "
                                                          f"{MAX_PREFER_WAIT_S}) answers the finished job (200) "
                                                          "if it ends in time")] = None) -> JobResponse:
    """Queue a video; poll the status URL, stream its events or give a callback_url. A repeat with
    the same Idempotency-Key and body returns the first job (200) instead of a new one. With
    ``Prefer: wait=N`` the answer waits up to N seconds: the ended job (200), else the queued one (202)."""
    job, created = await app.jobs.submit(body, caller, base_url, idempotency_key, cancel_after_s)
    wait_s = prefer_wait_s(prefer)
    if wait_s is not None:
        job = await app.jobs.wait(job, wait_s)
        response.headers["Preference-Applied"] = f"wait={wait_s:g}"
    view = app.views.job(job, await app.jobs.place(job))
    response.status_code = 202 if created and not job.status.final else 200
    response.headers["Location"] = view.status_url
    return view


def prefer_wait_s(prefer: str | None) -> float | None:
    """The ``wait`` preference of a Prefer header (RFC 7240), capped; None when absent or unreadable
    (a preference the server cannot honour is ignored, never an error)."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                return None
            return min(max(seconds, 0.0), MAX_PREFER_WAIT_S) if math.isfinite(seconds) else None
    return None


@router.get("/jobs", response_model=JobListResponse, responses=responses_for())
async def list_jobs(app: App, caller: ReadCaller, offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                    limit: Annotated[int, Query(ge=1, le=100)] = 20) -> JobListResponse:
    """The caller's jobs, newest first."""
    page, next_offset = await app.jobs.list(caller, offset, limit)
    snapshot = await app.jobs.snapshot() if any(not job.status.final for job in page) else None
    return JobListResponse(jobs=[app.views.job(job, snapshot.place(job) if snapshot else None) for job in page],
                           next_offset=next_offset)


@router.get("/jobs/{job_id}", response_model=JobResponse, responses=responses_for(NotFoundError))
async def get_job(job_id: str, app: App, caller: ReadCaller) -> JobResponse:
    """Status, queue position and ETA while waiting, progress and ETA while running, the result when
    succeeded, the error when failed."""
    job = await app.jobs.get(job_id, caller)
    return app.views.job(job, await app.jobs.place(job))


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "One event per status change and per denoising step."},
                       **responses_for(NotFoundError, InvalidEventIdError)})
async def job_events(job_id: str, app: App, caller: ReadCaller,
                     last_event_id: Annotated[str | None, Header(
                         description="The id of the last event received: the stream resumes after it. "
                                     "An id this job's stream never sent is a 400.",
                         # Documented, not enforced here: resume_after answers every other id with the 400.
                         json_schema_extra={"pattern": "^[0-9]{1,12}$"})] = None) -> EventSourceResponse:
    """Server-Sent Events of the job: queued (with queue_position and eta_s, again whenever they
    move), running (once per denoising step, with eta_s), then one of succeeded, failed or
    cancelled, whose data holds the whole job; the stream ends there. Each event has an id:
    reconnect with Last-Event-ID to resume after it (a queued update repeats the id of the event
    before it, so a resume never repeats a logged event). The stream of an ended job always ends
    with its final event, sent again to a client that resumes after it."""
    job = await app.jobs.get(job_id, caller)
    after = resume_after(last_event_id, job.events)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async for event in app.jobs.watch(job_id, after):
            data = event.model_dump(mode="json", exclude={"id", "type"}, exclude_none=True)
            if event.type in FINAL_TYPES:
                data["job"] = app.views.job(await app.jobs.get(job_id, caller)).model_dump(mode="json")
            yield ServerSentEvent(id=str(event.id), event=event.type, data=json.dumps(data))
    return EventSourceResponse(stream(), ping=HEARTBEAT_S)


def resume_after(last_event_id: str | None, last_sent: int) -> int:
    """The event id a stream resumes after: 0 without Last-Event-ID, else an id the job's stream
    has sent (0 to ``last_sent``); anything else is an ``InvalidEventIdError`` (400)."""
    text = (last_event_id or "").strip()
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or int(text) > last_sent:
        raise InvalidEventIdError(f"Last-Event-ID {text[:24]!r} is not an event this job's stream sent (its ids "
                                  f"run from 1 to {last_sent}); reconnect without it to start from the beginning")
    return int(text)


@router.delete("/jobs/{job_id}", response_model=JobResponse, responses=responses_for(NotFoundError))
async def cancel_job(job_id: str, app: App, caller: ReadCaller) -> JobResponse:
    """Cancel: a queued job never runs; a running one stops within a denoising step
    (its status is 'cancelling' until its worker has stopped it)."""
    return app.views.job(await app.jobs.cancel(job_id, caller))


@router.post("/jobs/{job_id}/cancel", response_model=JobResponse, responses=responses_for(NotFoundError))
async def cancel_job_post(job_id: str, app: App, caller: ReadCaller) -> JobResponse:
    """The same as DELETE, for clients that cannot send DELETE."""
    return app.views.job(await app.jobs.cancel(job_id, caller))


@router.post("/batch", status_code=202, response_model=BatchResponse,
             responses=responses_for(MalformedBodyError, QueueFullError))
async def submit_batch(batch: BatchRequest, app: App, base_url: BaseUrl, caller: RateLimitedCaller,
                       cancel_after_s: CancelAfter) -> BatchResponse:
    """Many jobs in one call: each item (over ``defaults``) becomes a job or carries its own error.
    A Cancel-After header applies to every item."""
    outcomes = await app.jobs.submit_batch(batch, caller, base_url, cancel_after_s)
    snapshot = await app.jobs.snapshot()
    items = [BatchItemResult(index=o.index, job=None if o.job is None else app.views.job(o.job, snapshot.place(o.job)),
                             error=None if o.error is None else JobErrorView(status=o.error.status,
                                                                             message=o.error.message))
             for o in outcomes]
    accepted = sum(1 for item in items if item.job is not None)
    return BatchResponse(accepted=accepted, rejected=len(items) - accepted, items=items)
