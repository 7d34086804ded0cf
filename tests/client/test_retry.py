"""Which calls are retried, and how long the client waits (the policy alone; the statuses that
trigger it come from real gateways in test_sdk.py)."""

from __future__ import annotations

import ssl

import httpx
import pytest

from i2v_client import PayloadTooLarge, RetryPolicy
from i2v_client.transport import Transport


def test_retry_after_is_honoured_up_to_the_bound_and_retries_are_counted() -> None:
    policy = RetryPolicy(max_retries=2, max_wait_s=10)
    assert policy.delay(1, 3.0) == 3.0
    assert policy.delay(1, 60.0) is None  # longer than the bound: raise at once rather than hang
    assert policy.delay(3, 1.0) is None  # out of retries
    backoffs = [policy.delay(attempt, None) for attempt in (1, 2)]
    assert all(delay is not None and 0 < delay <= policy.max_backoff_s for delay in backoffs)


def test_only_idempotent_calls_are_retried_except_where_nothing_ran() -> None:
    transport = Transport("http://gateway", "token", None, RetryPolicy(max_retries=3))
    busy = httpx.Response(503, headers={"Retry-After": "1"})
    limited = httpx.Response(429, headers={"Retry-After": "2"})
    request = httpx.Request("POST", "http://gateway/api/v1/generate")
    assert transport.retry_delay(transport.call("GET", "/api/v1/jobs"), 1, busy) == 1.0
    assert transport.retry_delay(transport.call("GET", "/api/v1/jobs"), 1, httpx.Response(504)) is not None
    generate = transport.call("POST", "/api/v1/generate", {})
    assert transport.retry_delay(generate, 1, busy) is None  # it may have run
    assert transport.retry_delay(generate, 1, limited) == 2.0  # a 429: nothing ran
    assert transport.retry_delay(generate, 1, None, httpx.ReadError("cut", request=request)) is None
    assert transport.retry_delay(generate, 1, None, httpx.ConnectError("refused", request=request)) is not None
    keyed = transport.call("POST", "/api/v1/jobs", {}, headers={"Idempotency-Key": "k"})
    assert transport.retry_delay(keyed, 1, busy) == 1.0
    assert transport.retry_delay(keyed, 1, httpx.Response(500)) is None
    assert transport.retry_delay(keyed, 1, None, httpx.ReadError("cut", request=request)) is not None
    no_retries = transport.call("GET", "/api/v1/jobs", max_retries=0)
    assert transport.retry_delay(no_retries, 1, busy) is None  # the call's own budget


def test_tls_failures_are_not_retried() -> None:
    transport = Transport("https://gateway", "token", None, RetryPolicy(max_retries=3))
    error = httpx.ConnectError("wrong version number", request=httpx.Request("GET", "https://gateway/"))
    error.__cause__ = ssl.SSLError("WRONG_VERSION_NUMBER")
    assert transport.retry_delay(transport.call("GET", "/api/v1/jobs"), 1, None, error) is None


def test_per_call_timeout_reaches_the_request() -> None:
    transport = Transport("http://gateway", "token", None, None, timeout=900)
    default = transport.request(httpx.Client(), transport.call("GET", "/api/v1/jobs"))
    own = transport.request(httpx.Client(), transport.call("GET", "/api/v1/jobs", timeout=3))
    assert default.extensions["timeout"]["read"] == 900 and default.extensions["timeout"]["connect"] == 10
    assert own.extensions["timeout"] == {"connect": 3, "read": 3, "write": 3, "pool": 3}


def test_a_body_over_the_known_limit_is_refused_before_sending() -> None:
    transport = Transport("http://gateway", "token", None, None, max_body_bytes=100)
    with pytest.raises(PayloadTooLarge, match="before sending"):
        transport.call("POST", "/api/v1/jobs", {"image_base64": "x" * 200})
    learner = Transport("http://gateway", "token", None, None)
    learner.learn(httpx.Response(413, json={"success": False, "message": "request body is larger than 50 bytes"}))
    assert learner.max_body_bytes == 50


def test_signed_requests_carry_the_gateway_headers() -> None:
    transport = Transport("http://gateway", "token", "signing-secret-0123456789", None)
    call = transport.call("GET", "/api/v1/jobs", query={"offset": 0, "limit": 5})
    request = transport.request(httpx.Client(), call)
    assert request.url.query == b"offset=0&limit=5"
    assert request.headers["X-Signature"].startswith("v1=") and request.headers["Authorization"] == "Bearer token"
