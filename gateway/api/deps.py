"""Dependencies shared by routes: the services, and the caller's rate budget and generation slot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Response

from gateway.edge.auth import Caller
from gateway.edge.state import edge_services
from gateway.errors import RateLimitedError
from gateway.services import Services, services

App = Annotated[Services, Depends(services)]


async def rate_budget(request: Request, response: Response, caller: Caller) -> str:
    """One request from the caller's rate budget; the caller's key name."""
    limiter = edge_services(request).rate_limiter
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
    slots = edge_services(request).generation_slots
    if slots is None:
        yield caller
        return
    with slots.slot(caller) as granted:
        if not granted:
            raise RateLimitedError(f"key '{caller}' already has {slots.limit} generations in flight; "
                                   "wait for one to finish", {"Retry-After": "5"})
        yield caller


Quota = Depends(generation_quota)


def base_url(request: Request, app: App) -> str:
    """Where this gateway is reached: the configured public URL, else the request's own."""
    return app.settings.public_base_url or str(request.base_url).rstrip("/")


BaseUrl = Annotated[str, Depends(base_url)]
