"""Routes of asynchronous jobs and batches: thin handlers over ``JobService``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from gateway.api.deps import Jobs, RateLimitedCaller
from gateway.api.routes import ERRORS
from gateway.auth import Caller
from gateway.schemas import BatchRequest, BatchResponse, JobListResponse, JobRequest, JobResponse
from gateway.signing import require_signature

router = APIRouter(prefix="/api/v1", tags=["jobs"], dependencies=[Depends(require_signature)])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: ERRORS[422] | {"description": "No such job for this key."}}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: ERRORS[422] | {"description": "The Idempotency-Key was used with a different body."}}


@router.post("/jobs", status_code=202, response_model=JobResponse, responses={**ERRORS, **_CONFLICT})
async def submit_job(body: JobRequest, request: Request, response: Response, jobs: Jobs, caller: RateLimitedCaller,
                     idempotency_key: Annotated[str | None, Header()] = None) -> JobResponse:
    """Queue a video; poll the status URL or give a callback_url. A repeat with the same
    Idempotency-Key and body returns the first job (200) instead of a new one."""
    job, created = await jobs.submit(body, caller, str(request.base_url).rstrip("/"), idempotency_key)
    view = jobs.view(job)
    response.status_code = 202 if created else 200
    response.headers["Location"] = view.status_url
    return view


@router.get("/jobs", response_model=JobListResponse, responses=ERRORS)
async def list_jobs(jobs: Jobs, caller: Caller, offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                    limit: Annotated[int, Query(ge=1, le=100)] = 20) -> JobListResponse:
    """The caller's jobs, newest first."""
    page, next_offset = await jobs.list(caller, offset, limit)
    return JobListResponse(jobs=[jobs.view(job) for job in page], next_offset=next_offset)


@router.get("/jobs/{job_id}", response_model=JobResponse, responses={**ERRORS, **_NOT_FOUND})
async def get_job(job_id: str, jobs: Jobs, caller: Caller) -> JobResponse:
    """Status, progress while running, the result when succeeded, the error when failed."""
    return jobs.view(await jobs.get(job_id, caller))


@router.delete("/jobs/{job_id}", response_model=JobResponse, responses={**ERRORS, **_NOT_FOUND})
async def cancel_job(job_id: str, jobs: Jobs, caller: Caller) -> JobResponse:
    """Cancel: a queued job never runs; a running one stops within a denoising step
    (the answer says 'cancelling' until its worker has stopped it)."""
    return jobs.view(await jobs.cancel(job_id, caller))


@router.post("/jobs/{job_id}/cancel", response_model=JobResponse, responses={**ERRORS, **_NOT_FOUND})
async def cancel_job_post(job_id: str, jobs: Jobs, caller: Caller) -> JobResponse:
    """The same as DELETE, for clients that cannot send DELETE."""
    return jobs.view(await jobs.cancel(job_id, caller))


@router.post("/batch", status_code=202, response_model=BatchResponse, responses=ERRORS)
async def submit_batch(batch: BatchRequest, request: Request, jobs: Jobs, caller: RateLimitedCaller) -> BatchResponse:
    """Many jobs in one call: each item (over ``defaults``) becomes a job or carries its own error."""
    return await jobs.submit_batch(batch, caller, str(request.base_url).rstrip("/"))
