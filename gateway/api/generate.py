"""HTTP routes: thin handlers over the services on ``app.state``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateway.api.deps import Generation, Quota
from gateway.schemas import (
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    HealthStatus,
)
from gateway.signing import require_signature

T = TypeVar("T")
_ERROR_DESCRIPTIONS = (
    (400, "The image is not valid base64 or not a readable image."),
    (401, "Missing or invalid token."),
    (403, "The caller's address is outside the IP allow-list."),
    (413, "The body or the image is too large."),
    (422, "A field is out of range or missing."),
    (429, "Rate limit or concurrent generations of this key exceeded; see Retry-After."),
    (502, "The model failed to make a video."),
    (503, "The model is not ready or at capacity; see Retry-After."),
    (504, "The model did not finish in time."),
)
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description} for status, description in _ERROR_DESCRIPTIONS}

router = APIRouter()


async def cancel_on_disconnect(request: Request, work: Awaitable[T], poll_s: float = 0.5) -> T:
    """Await ``work``, cancelling it (and so its Triton request) if the client goes away."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise asyncio.CancelledError("client disconnected")
    finally:
        if not task.done():
            task.cancel()


@router.post("/api/v1/generate", response_model=GenerateResponse, responses=ERRORS, tags=["generate"],
             dependencies=[Depends(require_signature), Quota])
async def generate(body: GenerateRequest, request: Request, service: Generation) -> GenerateResponse:
    """Generate a video from an image and a prompt, and wait for it."""
    return await cancel_on_disconnect(request, service.generate(body, str(request.base_url)))


@router.get("/healthz", response_model=HealthResponse, tags=["health"])
async def healthz() -> HealthResponse:
    """The gateway process is alive."""
    return HealthResponse(status=HealthStatus.ok)


@router.get("/readyz", response_model=HealthResponse, responses={503: {"model": HealthResponse}}, tags=["health"])
async def readyz(request: Request, service: Generation) -> JSONResponse:
    """Triton is reachable, the model is ready to serve and the job store answers."""
    ready, reason = await service.triton.readiness()
    if ready:
        ready, reason = await request.app.state.jobs.store_readiness()
    health = HealthResponse(status=HealthStatus.ready if ready else HealthStatus.not_ready, message=reason)
    return JSONResponse(health.model_dump(mode="json"), status_code=200 if ready else 503)
