"""``GET /api/v1/usage``: the caller's own usage per day and its quotas (issue 24)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.requests import Request

from gateway.api.deps import ReadCaller
from gateway.errors import responses_for
from gateway.tenants.schemas import OwnUsage
from gateway.tenants.service import KeyService, key_service
from gateway.tenants.usage import month_so_far, month_start

router = APIRouter(prefix="/api/v1", tags=["usage"])


@dataclass
class UsagePeriod:
    since: Annotated[dt.date | None, Query(description="First day (UTC, YYYY-MM-DD); default: the 1st of the month.")] \
        = None
    until: Annotated[dt.date | None, Query(description="Last day (UTC); default: today.")] = None

    def bounds(self) -> tuple[dt.date, dt.date]:
        until = self.until or month_so_far()[1]
        return self.since or month_start(until), until


@router.get("/usage", response_model=OwnUsage, responses=responses_for())
async def own_usage(request: Request, caller: ReadCaller, keys: Annotated[KeyService, Depends(key_service)],
                    period: Annotated[UsagePeriod, Depends()]) -> OwnUsage:
    """The calling key's usage: totals and per day (videos, frames, compute units, model seconds,
    cache hits, failures) over a period (default: this month so far), and its quotas."""
    since, until = period.bounds()
    usage = await keys.own_report(caller, since, until)
    return OwnUsage(**usage.model_dump(), since=since, until=until)
