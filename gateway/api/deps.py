"""Dependencies shared by routes: the services on ``app.state`` and the caller's quota."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Response

from gateway.auth import Caller
from gateway.errors import RateLimitedError
from gateway.service import GenerationService


def generation_service(request: Request) -> GenerationService:
    return request.app.state.generation


Generation = Annotated[GenerationService, Depends(generation_service)]


async def generation_quota(request: Request, response: Response, caller: Caller) -> AsyncIterator[str]:
    """One request from the caller's rate budget and one generation slot while it runs."""
    limiter = request.app.state.rate_limiter
    if limiter is not None:
        decision = limiter.take(f"key:{caller}")
        if not decision.allowed:
            raise RateLimitedError(f"rate limit for key '{caller}' reached; retry in {decision.retry_after_s} s",
                                   decision.headers())
        response.headers.update(decision.headers())
    slots = request.app.state.generation_slots
    if slots is None:
        yield caller
        return
    with slots.slot(caller) as granted:
        if not granted:
            raise RateLimitedError(f"key '{caller}' already has {slots.limit} generations in flight; "
                                   "wait for one to finish", {"Retry-After": "5"})
        yield caller


Quota = Depends(generation_quota)
