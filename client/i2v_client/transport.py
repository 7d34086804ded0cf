"""What the sync and async clients share: settings checked up front, request building (auth,
signing, per-call timeouts), retries with backoff that honour Retry-After, network failures as
SDK errors, answers parsed into models or errors, and the SSE line parser."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel

from i2v_client.errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    I2VError,
    PayloadTooLarge,
    parse_error,
    parse_retry_after,
)
from i2v_client.signing import signature_headers

DEFAULT_URL = "http://127.0.0.1:8000"
# One call's answer may take this long: a synchronous generation waits for a slot and then runs
# (the gateway's own inference deadline is 600 s by default, I2V_INFERENCE_TIMEOUT_S).
DEFAULT_TIMEOUT_S = 900.0
CONNECT_TIMEOUT_S = 10.0
# Answers that mean "nothing was done, ask again": rate limits, a gateway restarting or behind a
# proxy that lost it. Retried for idempotent calls; 500 is a bug, not retried.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A generate is not idempotent, but a 429 refused it before anything ran.
GENERATE_RETRY_STATUSES = frozenset({429})
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of 429, 502, 503 and 504 answers and of network failures for idempotent calls (of a
    429 and a connection never made for any call); ``max_retries`` per call overrides it.

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
    retry_statuses: frozenset[int] = RETRY_STATUSES  # answers retried when the call is idempotent
    timeout: float | None = None  # seconds for each attempt; None: the client's
    max_retries: int | None = None  # None: the client's RetryPolicy


def check_base_url(url: str) -> str:
    """The URL without its trailing slash, or ``ConfigurationError`` naming what is wrong."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        raise ConfigurationError(f"base URL {url!r} is not a URL: {error}") from error
    if parsed.scheme not in ("http", "https"):
        raise ConfigurationError(f"base URL {url!r} must start with http:// or https://")
    if not parsed.host:
        raise ConfigurationError(f"base URL {url!r} has no host")
    return url.rstrip("/")


def check_token(token: str) -> str:
    """A token must fit in one header line: printable ASCII (a newline from a file is the usual slip)."""
    if any(not (32 <= ord(char) < 127) for char in token):
        raise ConfigurationError("the API token holds a line break or another character a header cannot carry "
                                 "(was it read from a file with its newline?)")
    return token


def connection_error(error: httpx.HTTPError, base_url: str) -> I2VError:
    """The SDK error for a network failure; raise it ``from error``."""
    if isinstance(error, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return ConfigurationError(f"cannot send to {base_url}: {error}")
    if isinstance(error, httpx.TimeoutException):
        return APITimeoutError(f"{base_url} did not answer in time ({type(error).__name__})")
    return APIConnectionError(f"cannot reach {base_url}: {error or type(error).__name__}")


def nothing_was_sent(error: httpx.HTTPError) -> bool:
    """A failure to connect: the request never left, so any call may be sent again."""
    return isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))


def will_not_heal(error: BaseException) -> bool:
    """TLS refused (https to a plain-HTTP port, a bad certificate): retrying cannot help."""
    while error is not None:
        if isinstance(error, ssl.SSLError):
            return True
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return False


TOO_LARGE = re.compile(r"larger than (\d+) bytes")


class Transport:
    """Settings of a client and the pure parts of a call; the clients add the sending."""

    def __init__(self, base_url: str | None, token: str | None, signing_secret: str | None,
                 retry: RetryPolicy | None, max_body_bytes: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = check_base_url(base_url or os.environ.get("I2V_API_URL") or DEFAULT_URL)
        # A static key or a JWT: both travel as the bearer token.
        self.token = check_token(token if token is not None else os.environ.get("I2V_API_TOKEN", ""))
        # Set when the gateway requires signed requests (I2V_REQUEST_SIGNING_SECRET there; SECURITY.md).
        self.signing_secret = signing_secret or os.environ.get("I2V_REQUEST_SIGNING_SECRET") or None
        self.retry = retry or RetryPolicy()
        self.timeout = timeout  # each attempt of a call, unless the call has its own
        # The gateway's body limit (I2V_MAX_BODY_BYTES there) when the caller knows it, else learnt
        # from its first 413: a larger body is refused here instead of uploaded to be refused.
        limit = max_body_bytes if max_body_bytes is not None else os.environ.get("I2V_MAX_BODY_BYTES")
        self.max_body_bytes = int(limit) if limit else None

    def call(self, method: str, path: str, payload: Any = None, query: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None, idempotent: bool | None = None,
             timeout: float | None = None, max_retries: int | None = None,
             retry_statuses: frozenset[int] = RETRY_STATUSES) -> Call:
        headers = dict(headers or {})
        if idempotent is None:
            # POSTs are retried only when the server can tell a repeat from a new request.
            idempotent = method in ("GET", "HEAD", "DELETE") or "Idempotency-Key" in headers
        body = json.dumps(payload).encode() if payload is not None else b""
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if self.max_body_bytes is not None and len(body) > self.max_body_bytes:
            raise PayloadTooLarge(413, f"request body is larger than {self.max_body_bytes} bytes "
                                       f"({len(body)} bytes; refused before sending)")
        return Call(method, path, urlencode(query or {}), body, headers, idempotent, retry_statuses,
                    timeout, max_retries)

    def learn(self, response: httpx.Response) -> None:
        """Remember the body limit a 413 names, so the next oversized body is not sent at all."""
        if response.status_code == 413 and (found := TOO_LARGE.search(response.text)):
            self.max_body_bytes = int(found.group(1))

    def request(self, client: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
        headers = {"User-Agent": "i2v-client", **call.headers}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.signing_secret:
            headers.update(signature_headers(self.signing_secret, call.method, call.path, call.query, call.body))
        url = f"{self.base_url}{call.path}" + (f"?{call.query}" if call.query else "")
        request = client.build_request(call.method, url, content=call.body or None, headers=headers)
        seconds = self.timeout if call.timeout is None else call.timeout
        request.extensions["timeout"] = httpx.Timeout(seconds, connect=min(CONNECT_TIMEOUT_S, seconds)).as_dict()
        return request

    def policy(self, call: Call) -> RetryPolicy:
        return self.retry if call.max_retries is None else dataclasses.replace(self.retry, max_retries=call.max_retries)

    def retry_delay(self, call: Call, attempt: int, response: httpx.Response | None,
                    error: httpx.HTTPError | None = None) -> float | None:
        """How long to wait before sending ``call`` again, or None to stop (raise or return)."""
        policy = self.policy(call)
        if response is None:  # a network failure
            assert error is not None
            if will_not_heal(error) or not (call.idempotent or nothing_was_sent(error)):
                return None
            return policy.delay(attempt, None)
        if response.status_code not in (call.retry_statuses if call.idempotent else GENERATE_RETRY_STATUSES):
            return None
        return policy.delay(attempt, parse_retry_after(response.headers.get("Retry-After")))


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
