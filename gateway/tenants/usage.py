"""Usage per key per UTC day: the work each ended generation caused, and the periods quotas use.

A compute unit is one million pixel-steps: denoising steps x frames x width x height / 10^6
(a 512x512, 16-frame, 50-step video is 209.7 units). Model seconds are the gateway's timing of
the Triton inference call (the model's answer, queueing in Triton included; encoding excluded).
A video served from the result cache counts as a video and a cache hit, with no compute units
and no model seconds: the model did not run. ``requests`` counts generations that ended
(succeeded, failed or cancelled), synchronous ones and jobs alike.
"""

from __future__ import annotations

import datetime as dt
import time

from pydantic import BaseModel

COUNTERS = ("requests", "videos", "frames", "compute_units", "model_seconds", "cache_hits", "failed")


class UsageCounts(BaseModel):
    requests: int = 0
    videos: int = 0
    frames: int = 0
    compute_units: float = 0.0
    model_seconds: float = 0.0
    cache_hits: int = 0
    failed: int = 0

    def __add__(self, other: UsageCounts) -> UsageCounts:
        return UsageCounts(**{name: getattr(self, name) + getattr(other, name) for name in COUNTERS})

    def rounded(self) -> UsageCounts:
        return self.model_copy(update={"compute_units": round(self.compute_units, 6),
                                       "model_seconds": round(self.model_seconds, 3)})


def compute_units(steps: int, frames: int, width: int, height: int) -> float:
    return steps * frames * width * height / 1_000_000


def generation_usage(*, succeeded: bool, cached: bool = False, steps: int = 0, frames: int = 0, width: int = 0,
                     height: int = 0, model_seconds: float = 0.0) -> UsageCounts:
    """The usage of one ended generation."""
    if not succeeded:
        return UsageCounts(requests=1, failed=1)
    if cached:
        return UsageCounts(requests=1, videos=1, frames=frames, cache_hits=1)
    return UsageCounts(requests=1, videos=1, frames=frames, compute_units=compute_units(steps, frames, width, height),
                       model_seconds=model_seconds)


def day_of(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).date().isoformat()


def days_between(since: dt.date, until: dt.date) -> list[str]:
    return [(since + dt.timedelta(days=n)).isoformat() for n in range((until - since).days + 1)]


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def month_so_far(now: float | None = None) -> tuple[dt.date, dt.date]:
    """The 1st of this UTC month and today: the period usage is shown for unless asked otherwise."""
    today = dt.date.fromisoformat(day_of(time.time() if now is None else now))
    return month_start(today), today


def next_day_start(now: float) -> float:
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.timezone.utc).timestamp()


def next_month_start(now: float) -> float:
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
    first = (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return dt.datetime.combine(first, dt.time(), dt.timezone.utc).timestamp()
