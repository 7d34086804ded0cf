"""What the sync and async clients share: request building (auth, signing), retries with backoff
that honour Retry-After, answers parsed into models or errors, and the SSE line parser."""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel

from i2v_client.errors import I2VError, parse_error, parse_retry_after
from i2v_client.signing import signature_headers

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({429, 503})
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of 429 and 503 answers (and of connection failures) for idempotent calls.

    The wait is the answer's Retry-After when it has one, else exponential backoff with jitter;
    a Retry-After longer than ``max_wait_s`` is not waited for: the error is raised at once.
    """

    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_wait_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1, 2, ...); None: do not retry."""
        if attempt > self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_wait_s else None
        backoff = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)


NO_RETRIES = RetryPolicy(max_retries=0)


@dataclass(frozen=True)
class Call:
    """One API call, ready to send (and to send again: a retry signs afresh)."""

    method: str
    path: str
    query: str = ""
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True


class Transport:
    """Settings of a client and the pure parts of a call; the clients add the sending."""

    def __init__(self, base_url: str | None, token: str | None, signing_secret: str | None,
                 retry: RetryPolicy | None) -> None:
        self.base_url = (base_url or os.environ.get("I2V_API_URL") or DEFAULT_URL).rstrip("/")
        # A static key or a JWT: both travel as the bearer token.
        self.token = token if token is not None else os.environ.get("I2V_API_TOKEN", "")
        # Set when the gateway requires signed requests (I2V_REQUEST_SIGNING_SECRET there; SECURITY.md).
        self.signing_secret = signing_secret or os.environ.get("I2V_REQUEST_SIGNING_SECRET") or None
        self.retry = retry or RetryPolicy()

    def call(self, method: str, path: str, payload: Any = None, query: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None, idempotent: bool | None = None) -> Call:
        headers = dict(headers or {})
        if idempotent is None:
            # POSTs are retried only when the server can tell a repeat from a new request.
            idempotent = method in ("GET", "HEAD", "DELETE") or "Idempotency-Key" in headers
        body = json.dumps(payload).encode() if payload is not None else b""
        if payload is not None:
            headers["Content-Type"] = "application/json"
        return Call(method, path, urlencode(query or {}), body, headers, idempotent)

    def request(self, client: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
        headers = {"User-Agent": "i2v-client", **call.headers}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.signing_secret:
            headers.update(signature_headers(self.signing_secret, call.method, call.path, call.query, call.body))
        url = f"{self.base_url}{call.path}" + (f"?{call.query}" if call.query else "")
        return client.build_request(call.method, url, content=call.body or None, headers=headers)

    def retry_delay(self, call: Call, attempt: int, response: httpx.Response | None) -> float | None:
        """How long to wait before sending ``call`` again, or None to stop (raise or return)."""
        if not call.idempotent:
            return None
        if response is None:  # a connection failure
            return self.retry.delay(attempt, None)
        if response.status_code not in RETRY_STATUSES:
            return None
        return self.retry.delay(attempt, parse_retry_after(response.headers.get("Retry-After")))


def new_idempotency_key() -> str:
    return f"i2v-{uuid.uuid4()}"


def error_of(response: httpx.Response) -> I2VError:
    try:
        body: object = response.json()
    except ValueError:
        body = response.text
    return parse_error(response.status_code, body, response.headers.get("Retry-After"))


def parse(response: httpx.Response, model: type[Model]) -> Model:
    """The answer as ``model``, or the error it carries."""
    if response.status_code >= 400:
        raise error_of(response)
    return model.model_validate_json(response.content)


@dataclass
class SseEvent:
    id: str
    type: str
    data: dict[str, Any]


class SseParser:
    """Server-Sent Events from lines: ``feed`` each line, an event comes back at its blank line."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.data: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        if line.startswith(":"):
            return None  # a heartbeat comment
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self.data.append(value)
            else:
                self.fields[name] = value
            return None
        fields, data = self.fields, "\n".join(self.data)
        self.fields, self.data = {}, []
        if "event" not in fields and not data:
            return None
        return SseEvent(fields.get("id", ""), fields.get("event", "message"), json.loads(data) if data else {})
