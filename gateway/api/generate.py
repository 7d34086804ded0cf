"""``POST /api/v1/generate``: one video, waited for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request

from gateway.api.deps import App, BaseUrl, CancelAfter, Quota
from gateway.edge.signing import require_signature
from gateway.errors import (
    InferenceTimeoutError,
    InvalidImageError,
    MalformedBodyError,
    ModelFailedError,
    ModelUnavailableError,
    responses_for,
)
from gateway.schemas import GenerateRequest, GenerateResponse

T = TypeVar("T")
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


@router.post("/api/v1/generate", response_model=GenerateResponse, tags=["generate"],
             responses=responses_for(MalformedBodyError, InvalidImageError, ModelFailedError, ModelUnavailableError,
                                     InferenceTimeoutError),
             dependencies=[Depends(require_signature), Quota])
async def generate(body: GenerateRequest, request: Request, app: App, base_url: BaseUrl,
                   cancel_after_s: CancelAfter) -> GenerateResponse:
    """Generate a video from an image and a prompt, and wait for it. With a Cancel-After header
    (or ``cancel_after_s``) the generation is cancelled past that deadline: a 504."""
    deadlines = [d for d in (body.cancel_after_s, cancel_after_s) if d is not None]
    work = app.generation.generate(body)
    if deadlines:
        waited = time.monotonic() - getattr(request.state, "received_at", time.monotonic())
        work = cancel_after(work, min(deadlines), min(deadlines) - waited)
    result = await cancel_on_disconnect(request, work)
    return result.response(app.outputs, base_url)


async def cancel_after(work: Awaitable[T], deadline_s: float, left_s: float) -> T:
    """``work``, cancelled (and its Triton request with it) if it runs past the ``left_s`` seconds
    left of the caller's ``deadline_s``."""
    try:
        return await asyncio.wait_for(work, max(0.0, left_s))
    except asyncio.TimeoutError:
        raise InferenceTimeoutError(f"cancelled: the Cancel-After deadline of {deadline_s:g} s passed") from None
