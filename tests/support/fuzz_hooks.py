"""Schemathesis hooks for tests/gateway/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

A generated job id is almost never a job, so the events stream would only ever answer 404: for
half of the generated ids (by their length) the stream of a job that has ended is asked for
instead (``I2V_FUZZ_ENDED_JOB``), and half of the generated ``Last-Event-ID`` headers become ids
a resuming client could send: in range, past the end, negative or too large for 64 bits. Half of
the generated callback URLs become hostile ones: ports out of range, malformed or private hosts.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import schemathesis

ENDED_JOB = os.environ.get("I2V_FUZZ_ENDED_JOB", "")
LAST_EVENT = int(os.environ.get("I2V_FUZZ_ENDED_JOB_EVENTS", "0"))
HOSTILE_URLS = ["http://example.com:99999/", "http://[zz]/", "http://example.com:-1/", "http://example.com:0/",
                "http://exa mple.com/", "http://127.0.0.1:8000/x", "http://[::1]/", "http://169.254.169.254/",
                "https://user:pw@example.com/", "http://%zz/", "ftp://example.com/", "http://[v1.x]/"]
INTEGER_FIELDS = {"num_frames", "fps", "steps", "seed", "step_cache_interval"}
RESUME_IDS = ["0", "1", str(LAST_EVENT), str(LAST_EVENT + 1), "-1", "99999999999999999999999", " 1 ", "1e3"]


def _is_events(context: Any) -> bool:
    return context.operation is not None and context.operation.path.endswith("/events")


@schemathesis.hook
def map_path_parameters(context: Any, path_parameters: dict[str, Any]) -> dict[str, Any]:
    if ENDED_JOB and _is_events(context) and len(str(path_parameters.get("job_id", ""))) % 2 == 0:
        return {**path_parameters, "job_id": ENDED_JOB}
    return path_parameters


@schemathesis.hook
def map_headers(context: Any, headers: dict[str, Any] | None) -> dict[str, Any] | None:
    if not headers or not _is_events(context) or "Last-Event-ID" not in headers:
        return headers
    choice = zlib.crc32(str(headers["Last-Event-ID"]).encode()) % (2 * len(RESUME_IDS))
    if choice < len(RESUME_IDS):
        return {**headers, "Last-Event-ID": RESUME_IDS[choice]}
    return headers


def _hostile(url: Any) -> Any:
    choice = zlib.crc32(str(url).encode()) % (2 * len(HOSTILE_URLS))
    return HOSTILE_URLS[choice] if choice < len(HOSTILE_URLS) else url


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if isinstance(body, dict):
        body = _as_sent(body)
        if isinstance(body.get("items"), list):
            body = {**body, "items": [_as_sent(item) if isinstance(item, dict) else item for item in body["items"]]}
        if isinstance(body.get("defaults"), dict):
            body = {**body, "defaults": _as_sent(body["defaults"])}
    return body


def _as_sent(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema counts 16.0 as an integer, but the API's integer fields are strict (a 422 that
    tests/gateway/test_bad_input.py checks): send 16, so generated bodies get past validation to
    the checks behind it. And make half of the callback URLs hostile."""
    fields = {name: int(value) if name in INTEGER_FIELDS and isinstance(value, float) and value.is_integer()
              else value for name, value in fields.items()}
    if isinstance(fields.get("callback_url"), str):
        fields["callback_url"] = _hostile(fields["callback_url"])
    return fields
