"""Dependencies shared by routes: the services on ``app.state`` and the caller's quota."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Response

from gateway.auth import Caller
from gateway.errors import RateLimitedError
from gateway.jobs.service import JobService
from gateway.service import GenerationService


def generation_service(request: Request) -> GenerationService:
    return request.app.state.generation


Generation = Annotated[GenerationService, Depends(generation_service)]


def job_service(request: Request) -> JobService:
    return request.app.state.jobs


Jobs = Annotated[JobService, Depends(job_service)]


async def rate_budget(request: Request, response: Response, caller: Caller) -> str:
    """One request from the caller's rate budget; the caller's key name."""
    limiter = request.app.state.rate_limiter
    if limiter is not None:
        decision = await limiter.acquire(f"key:{caller}")
        if not decision.allowed:
            raise RateLimitedError(f"rate limit for key '{caller}' reached; retry in {decision.retry_after_s} s",
                                   decision.headers())
        response.headers.update(decision.headers())
    return caller


RateLimitedCaller = Annotated[str, Depends(rate_budget)]


async def generation_quota(request: Request, caller: RateLimitedCaller) -> AsyncIterator[str]:
    """One request from the caller's rate budget and one generation slot while it runs."""
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
