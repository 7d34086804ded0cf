"""Read a Server-Sent Events stream to its end, as a client would (no library: the test checks the wire)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict


def read_events(url: str, headers: dict[str, str], last_event_id: str | None = None, limit: int | None = None,
                timeout: float = 240) -> list[Event]:
    """Every event until the server ends the stream (or ``limit`` events); comments are skipped.
    ``timeout`` bounds the whole read: heartbeats keep a stuck stream alive forever otherwise."""
    if last_event_id is not None:
        headers = {**headers, "Last-Event-ID": last_event_id}
    events: list[Event] = []
    fields: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(timeout, connect=10)) as response:
        assert response.status_code == 200, response.read().decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: the stream did not end within {timeout} s; events so far: {events}")
            if line.startswith(":"):
                continue  # heartbeat
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "event" in fields:
                events.append(Event(fields.get("id", ""), fields["event"], json.loads(fields.get("data", "{}"))))
                if limit is not None and len(events) >= limit:
                    break
            fields = {}
    return events
