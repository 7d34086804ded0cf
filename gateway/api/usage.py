"""``GET /api/v1/usage``: the caller's own usage per day and its quotas (issue 24)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.requests import Request

from gateway.api.deps import ReadCaller
from gateway.errors import responses_for
from gateway.tenants.schemas import KeyUsage, OwnUsage, UsageDay
from gateway.tenants.service import KeyService, key_service
from gateway.tenants.usage import UsageCounts, day_of

router = APIRouter(prefix="/api/v1", tags=["usage"])


@dataclass
class UsagePeriod:
    since: Annotated[dt.date | None, Query(description="First day (UTC, YYYY-MM-DD); default: the 1st of the month.")] \
        = None
    until: Annotated[dt.date | None, Query(description="Last day (UTC); default: today.")] = None

    def bounds(self) -> tuple[dt.date, dt.date]:
        until = self.until or dt.date.fromisoformat(day_of(time.time()))
        return self.since or until.replace(day=1), until


async def key_usage(keys: KeyService, caller: str, days: dict[str, UsageCounts], name: str | None = None) -> KeyUsage:
    """One caller's usage report: totals, days, and its quotas when it is a stored key."""
    totals = sum(days.values(), UsageCounts())
    stored = await keys.store.get_key(caller) if caller.startswith("key_") else None
    return KeyUsage(key=caller, name=name or (stored.name if stored else None), totals=totals.rounded(),
                    days=[UsageDay(day=dt.date.fromisoformat(day), **counts.rounded().model_dump())
                          for day, counts in sorted(days.items())],
                    quotas=await keys.quota_states(stored) if stored is not None else [])


@router.get("/usage", response_model=OwnUsage, responses=responses_for())
async def own_usage(request: Request, caller: ReadCaller, keys: Annotated[KeyService, Depends(key_service)],
                    period: Annotated[UsagePeriod, Depends()]) -> OwnUsage:
    """The calling key's usage: totals and per day (videos, frames, compute units, model seconds,
    cache hits, failures) over a period (default: this month so far), and its quotas."""
    since, until = period.bounds()
    found = await keys.usage(since, until, caller)
    usage = await key_usage(keys, caller, found.get(caller, {}))
    return OwnUsage(**usage.model_dump(), since=since, until=until)
