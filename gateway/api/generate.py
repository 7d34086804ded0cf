"""``POST /api/v1/generate``: one video, waited for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request

from gateway.api.deps import App, BaseUrl, CancelAfter, RateLimitedCaller, generation_slot
from gateway.edge.closing import ClientDisconnected
from gateway.edge.signing import require_signature
from gateway.errors import (
    ApiError,
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
from gateway.tenants.service import result_usage
from gateway.tenants.usage import generation_usage

T = TypeVar("T")
router = APIRouter()


async def cancel_on_disconnect(request: Request, work: Awaitable[T], poll_s: float = 0.5) -> T:
    """Await ``work``, cancelling it (and so its Triton request) if the client goes away: then
    ``ClientDisconnected``, which the edge logs and counts as 499, not as a server error."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientDisconnected()
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
            try:
                result = await app.generation.generate(body, deadline)
            except ApiError:  # a generation that ran and failed; not a refusal in the line above
                await app.tenants.record(caller, generation_usage(succeeded=False))
                raise
        await app.tenants.record(caller, result_usage(result, body.steps))  # usage per key
        return result

    # A caller that goes away leaves the key's line, or cancels its Triton request.
    result = await cancel_on_disconnect(request, in_a_slot())
    return result.response(app.outputs, base_url)

