"""Dependencies shared by routes: the services, and the caller's rate budget and generation slot."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Header, Request, Response

from gateway.edge.auth import Caller
from gateway.edge.fair_queue import DeadlinePassed, QueueRejected
from gateway.edge.keys import admit_work, concurrency_cap, require_scope, submission_limiter
from gateway.edge.rate_limit import READS, SUBMISSIONS, spend
from gateway.edge.state import edge_services
from gateway.errors import InferenceTimeoutError, InvalidFieldError, RateLimitedError
from gateway.generation.service import Deadline
from gateway.services import Services, services
from gateway.tenants.records import Scope

App = Annotated[Services, Depends(services)]


async def rate_budget(request: Request, response: Response, caller: Caller) -> str:
    """One request from the caller's rate budget (requests that start work); the caller's key name."""
    await admit_work(request)  # the generate scope, the key's quotas
    response.headers.update(await spend(submission_limiter(request), SUBMISSIONS, caller))
    return caller


async def read_budget(request: Request, response: Response, caller: Caller) -> str:
    """One read (or cancel) of jobs from the caller's own read budget; the caller's key name."""
    require_scope(request, Scope.read)
    response.headers.update(await spend(edge_services(request).read_limiter, READS, caller))
    return caller


ReadCaller = Annotated[str, Depends(read_budget)]
RateLimitedCaller = Annotated[str, Depends(rate_budget)]


@asynccontextmanager
async def generation_slot(request: Request, caller: str, deadline: Deadline | None) -> AsyncIterator[None]:
    """One generation slot while the block runs: over the key's cap (or the gateway's) the call waits
    its turn in the key's line (fair_queue.py); 429 only beyond that line's bounds, and 504 when the
    caller's deadline passes first (the call then leaves the line and never reaches Triton)."""
    try:
        async with edge_services(request).generation_slots.slot(
                caller, None if deadline is None else deadline.left_s(), concurrency_cap(request)):
            yield
    except QueueRejected as exc:
        raise RateLimitedError(exc.reason, {"Retry-After": str(exc.retry_after_s)}) from None
    except DeadlinePassed:
        seconds = deadline.seconds if deadline is not None else 0.0
        raise InferenceTimeoutError(f"cancelled: the Cancel-After deadline of {seconds:g} s passed "
                                    "while the call waited for a generation slot") from None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str) -> float:
    """Seconds in a duration such as '90', '90s', '1.5m', '1h30m' or '500ms' (Replicate's
    Cancel-After form); ``InvalidFieldError`` otherwise."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(number + unit for number, unit in parts) != text:
            raise InvalidFieldError(f"Cancel-After must be a duration such as 90s, 5m or 1h30m, not {text!r}") \
                from None
        seconds = sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    if not 0 < seconds <= 86400:  # NaN fails this too
        raise InvalidFieldError("Cancel-After must be more than 0 s and at most 24 h")
    return seconds


def cancel_after(header: Annotated[str | None, Header(
        alias="Cancel-After", description="Cancel the request this long after submission: '90s', '5m', '1h30m' "
        "or seconds; the model stops within a denoising step.")] = None) -> float | None:
    return None if header is None else parse_duration_s(header)


CancelAfter = Annotated[float | None, Depends(cancel_after)]


def base_url(request: Request, app: App) -> str:
    """Where this gateway is reached: the configured public URL, else the request's own."""
    return app.settings.public_base_url or str(request.base_url).rstrip("/")


BaseUrl = Annotated[str, Depends(base_url)]
