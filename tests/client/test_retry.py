"""Which calls are retried, and how long the client waits (the policy alone; the statuses that
trigger it come from real gateways in test_sdk.py)."""

from __future__ import annotations

import httpx

from i2v_client import RetryPolicy
from i2v_client.transport import Transport


def test_retry_after_is_honoured_up_to_the_bound_and_retries_are_counted() -> None:
    policy = RetryPolicy(max_retries=2, max_wait_s=10)
    assert policy.delay(1, 3.0) == 3.0
    assert policy.delay(1, 60.0) is None  # longer than the bound: raise at once rather than hang
    assert policy.delay(3, 1.0) is None  # out of retries
    backoffs = [policy.delay(attempt, None) for attempt in (1, 2)]
    assert all(delay is not None and 0 < delay <= policy.max_backoff_s for delay in backoffs)


def test_only_idempotent_calls_are_retried() -> None:
    transport = Transport("http://gateway", "token", None, RetryPolicy(max_retries=3))
    busy = httpx.Response(503, headers={"Retry-After": "1"})
    assert transport.retry_delay(transport.call("GET", "/api/v1/jobs"), 1, busy) == 1.0
    assert transport.retry_delay(transport.call("POST", "/api/v1/generate", {}), 1, busy) is None
    keyed = transport.call("POST", "/api/v1/jobs", {}, headers={"Idempotency-Key": "k"})
    assert transport.retry_delay(keyed, 1, busy) == 1.0
    assert transport.retry_delay(keyed, 1, httpx.Response(500)) is None
    assert transport.retry_delay(keyed, 1, None) is not None  # a connection failure


def test_signed_requests_carry_the_gateway_headers() -> None:
    transport = Transport("http://gateway", "token", "signing-secret-0123456789", None)
    call = transport.call("GET", "/api/v1/jobs", query={"offset": 0, "limit": 5})
    request = transport.request(httpx.Client(), call)
    assert request.url.query == b"offset=0&limit=5"
    assert request.headers["X-Signature"].startswith("v1=") and request.headers["Authorization"] == "Bearer token"
