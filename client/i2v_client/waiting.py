"""What waiting for a job needs in both clients: events and polled jobs as ``Progress``, a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from i2v_client.models import FINAL_STATUSES, GenerateResponse, JobResponse, Progress
from i2v_client.transport import SseEvent, SseParser

ProgressCallback = Callable[[Progress], None]
STREAM_READ_TIMEOUT_S = 60.0  # the gateway sends a heartbeat every 5 s; this long silent means a dead stream


class StreamUnavailable(Exception):
    """The event stream cannot be used (no such route, a proxy in the way, cut short): poll instead."""


def job_id_of(job: str | JobResponse) -> str:
    return job.job_id if isinstance(job, JobResponse) else job


def video_url_of(source: str | GenerateResponse | JobResponse) -> str:
    if isinstance(source, JobResponse):
        if source.result is None:
            raise ValueError(f"job {source.job_id} is {source.status.value}: it has no video")
        return source.result.video_url
    return source.video_url if isinstance(source, GenerateResponse) else source


def check_event_stream(response: httpx.Response) -> None:
    """A stream to read, or ``StreamUnavailable`` (the caller has turned 401, 403 and 404 into errors)."""
    if response.status_code != 200 or not response.headers.get("content-type", "").startswith("text/event-stream"):
        raise StreamUnavailable(f"events answered {response.status_code}")


class EventFollower:
    """Reads a job's event stream line by line: progress to the callback, the job at its final event."""

    def __init__(self, job_id: str, deadline: Deadline, notify: ProgressCallback) -> None:
        self.job_id, self.deadline, self.notify = job_id, deadline, notify
        self.parser, self.status = SseParser(), "queued"

    def feed(self, line: str) -> JobResponse | None:
        self.deadline.check(self.status)
        event = self.parser.feed(line)
        if event is None:
            return None
        self.status = event.type
        self.notify(event_progress(self.job_id, event))
        return event_final_job(event)


def event_progress(job_id: str, event: SseEvent) -> Progress:
    data = event.data
    return Progress(job_id=job_id, status=event.type, step=data.get("step"), total=data.get("total"),
                    message=data.get("message", ""), **{k: v for k, v in data.items()
                                                        if k not in ("step", "total", "message", "job")})


def event_final_job(event: SseEvent) -> JobResponse | None:
    if event.type in FINAL_STATUSES and "job" in event.data:
        return JobResponse.model_validate(event.data["job"])
    return None


def job_progress(job: JobResponse) -> Progress:
    step, total = (job.progress.step, job.progress.total) if job.progress else (None, None)
    return Progress(job_id=job.job_id, status=job.status, step=step, total=total, message=job.message)


class Deadline:
    def __init__(self, job_id: str, timeout: float | None) -> None:
        self.job_id, self.timeout = job_id, timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def pause(self, poll_interval: float) -> float:
        """How long to sleep before the next poll: the interval, or less when the deadline is nearer."""
        return poll_interval if self.at is None else max(0.0, min(poll_interval, self.at - time.monotonic()))

    def check(self, status: str) -> None:
        if self.at is not None and time.monotonic() > self.at:
            raise TimeoutError(f"job {self.job_id} is still {status} after {self.timeout:g} s")


class ProgressNotifier:
    """Calls the callback for each change seen; polling sees the same state many times."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.last: tuple[object, ...] | None = None

    def __call__(self, progress: Progress) -> None:
        key = (progress.status, progress.step, progress.total)
        if self.callback is not None and key != self.last:
            self.last = key
            self.callback(progress)
