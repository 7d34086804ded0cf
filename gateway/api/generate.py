"""``POST /api/v1/generate``: one video, waited for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request

from gateway.api.deps import App, BaseUrl, CancelAfter, RateLimitedCaller, generation_slot
from gateway.edge.signing import require_signature
from gateway.errors import (
    InferenceTimeoutError,
    InvalidImageError,
    MalformedBodyError,
    ModelFailedError,
    ModelUnavailableError,
    responses_for,
)
from gateway.generation.results import VideoResult
from gateway.generation.service import Deadline
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
             dependencies=[Depends(require_signature)])
async def generate(body: GenerateRequest, request: Request, app: App, base_url: BaseUrl, caller: RateLimitedCaller,
                   cancel_after_s: CancelAfter) -> GenerateResponse:
    """Generate a video from an image and a prompt, and wait for it. With a Cancel-After header
    (or ``cancel_after_s``) the call is cancelled past that deadline, also while it waits for a
    generation slot: a 504."""
    deadlines = [d for d in (body.cancel_after_s, cancel_after_s) if d is not None]
    # Counted from the request's arrival: a wait for a generation slot uses it up too.
    deadline = Deadline(min(deadlines), getattr(request.state, "received_at", time.monotonic())) \
        if deadlines else None

    async def in_a_slot() -> VideoResult:
        async with generation_slot(request, caller, deadline):
            return await app.generation.generate(body, deadline)

    # A caller that goes away leaves the key's line, or cancels its Triton request.
    result = await cancel_on_disconnect(request, in_a_slot())
    return result.response(app.outputs, base_url)

