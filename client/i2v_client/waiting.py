"""What waiting for a job needs in both clients: one ``Follow`` per wait, which keeps its place in
the job's event stream across reconnections, turns events and polled jobs into ``Progress`` (each
once), spaces reconnections (capped exponential back-off with jitter) and keeps the deadline."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import httpx

from i2v_client.errors import APIConnectionError, I2VError, WaitTimeoutError
from i2v_client.models import FINAL_STATUSES, GenerateResponse, JobResponse, Progress
from i2v_client.transport import SseEvent, SseParser

ProgressCallback = Callable[[Progress], None]
STREAM_READ_TIMEOUT_S = 60.0  # the gateway sends a heartbeat every 5 s; this long silent means a dead stream
# Reconnections after a failure: 0.25 s doubling up to 5 s, each shortened by up to half at random
# so that the clients of a restarted gateway do not all come back in the same instant.
RECONNECT_FIRST_S = 0.25
RECONNECT_MAX_S = 5.0
# Answers that a restart, a proxy or a busy gateway give for a while: a wait rides them out.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class StreamUnavailable(Exception):
    """The event stream cannot be used now (cut short, ended early): poll, then reconnect."""


class NoEventStream(StreamUnavailable):
    """The answer is not an event stream (a proxy in the way): follow the job by polling alone."""


def job_id_of(job: str | JobResponse) -> str:
    return job.job_id if isinstance(job, JobResponse) else job


def video_url_of(source: str | GenerateResponse | JobResponse) -> str:
    if isinstance(source, JobResponse):
        if source.result is None:
            raise ValueError(f"job {source.job_id} is {source.status.value}: it has no video")
        return source.result.video_url
    return source.video_url if isinstance(source, GenerateResponse) else source


def check_event_stream(response: httpx.Response) -> None:
    """A stream to read, or why not (the caller has turned 4xx answers into errors)."""
    if response.status_code != 200:
        raise StreamUnavailable(f"events answered {response.status_code}")
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        raise NoEventStream(f"events answered {response.headers.get('content-type')!r}, not an event stream")


def is_transient(error: Exception) -> bool:
    """A failure a wait outlives: no answer, a cut stream, or a status a restart or a proxy gives."""
    if isinstance(error, (StreamUnavailable, APIConnectionError)):
        return not isinstance(error, WaitTimeoutError)
    return isinstance(error, I2VError) and error.status in TRANSIENT_STATUSES


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

    def pause(self, seconds: float) -> float:
        """``seconds``, or less when the deadline is nearer."""
        return seconds if self.at is None else max(0.0, min(seconds, self.at - time.monotonic()))

    def check(self, status: str) -> None:
        if self.at is not None and time.monotonic() > self.at:
            raise WaitTimeoutError(self.job_id, f"job {self.job_id} is still {status} after {self.timeout:g} s "
                                                f"(it goes on; wait again or cancel it)")


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


class Follow:
    """One ``wait``: the stream's place (its last event id, sent back as Last-Event-ID, so a
    reconnection resumes after it and no event reaches the callback twice), the back-off, the
    deadline. Once a stream has answered, progress comes from streams only; polling between
    reconnections looks for the end (its progress would repeat what the resumed stream replays)."""

    def __init__(self, job_id: str, timeout: float | None, callback: ProgressCallback | None) -> None:
        self.job_id = job_id
        self.deadline = Deadline(job_id, timeout)
        self.notify = ProgressNotifier(callback)
        self.last_event_id: int | None = None
        self.status = "queued"
        self.streamed = False  # a stream answered in this wait
        self.polling_only = False  # the gateway (or a proxy) gives no event stream
        self.failures = 0

    def stream_headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        return headers

    def connected(self) -> EventReader:
        self.streamed, self.failures = True, 0
        return EventReader(self)

    def event(self, event: SseEvent) -> JobResponse | None:
        """Progress for a new event; the job at its final event."""
        if event.id.isdigit():
            number = int(event.id)
            # A queued update repeats the id of the event before it; anything older was seen.
            if self.last_event_id is not None and (number < self.last_event_id or
                                                   (number == self.last_event_id and event.type != "queued")):
                return None
            self.last_event_id = number
        self.status = event.type
        self.notify(event_progress(self.job_id, event))
        return event_final_job(event)

    def polled(self, job: JobResponse) -> JobResponse | None:
        """The job if it ended; progress from it only when there are no streams to give it."""
        self.status = job.status.value
        self.failures = 0  # the gateway answers: look again at the poll interval
        if job.status.final or not self.streamed:
            self.notify(job_progress(job))
        return job if job.status.final else None

    def failed(self, error: Exception) -> None:
        """Raise what a wait cannot outlive; count a failure it can (for the back-off)."""
        if not is_transient(error):
            raise error
        if isinstance(error, NoEventStream) and not self.streamed:
            self.polling_only = True
        self.failures += 1
        self.deadline.check(self.status)

    def backoff(self, poll_interval: float) -> float:
        """Seconds to sleep before the next look: the poll interval while the gateway answers,
        else the back-off for the failures in a row."""
        if self.failures == 0:
            return self.deadline.pause(poll_interval)
        delay = min(RECONNECT_MAX_S, RECONNECT_FIRST_S * 2 ** (self.failures - 1))
        return self.deadline.pause(delay * (0.5 + random.random() / 2))


class EventReader:
    """Lines of one stream connection into the ``Follow``: the job at its final event."""

    def __init__(self, follow: Follow) -> None:
        self.follow, self.parser = follow, SseParser()

    def feed(self, line: str) -> JobResponse | None:
        self.follow.deadline.check(self.follow.status)
        event = self.parser.feed(line)
        return None if event is None else self.follow.event(event)
