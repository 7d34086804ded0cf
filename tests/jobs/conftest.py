"""Gateways for the job tests, each suite run once with the SQLite store and once with Redis."""

from __future__ import annotations

import base64

import pytest

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"test-webhook-secret-32-bytes-ok!").decode()
OTHER_KEY = "other-key-0123456789"
JOB_ENV = {
    "I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_MAX_CONCURRENT_PER_KEY": "0",
    "I2V_API_KEYS": f"other={OTHER_KEY}",
    "I2V_WEBHOOK_SECRET": WEBHOOK_SECRET, "I2V_WEBHOOK_ALLOW_PRIVATE": "true",
    "I2V_WEBHOOK_RETRY_DELAYS_S": "0.3,0.3,0.3",
    # A killed gateway's running job goes back to the queue after this many seconds.
    "I2V_JOB_LEASE_S": "3",
    # One worker: a second job stays queued while the first runs (the cancel test needs that).
    "I2V_JOB_WORKERS": "1",
}


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings that pick the job store; the Redis one is a fresh database per module run."""
    if request.param == "redis":
        return {"I2V_REDIS_URL": request.getfixturevalue("new_redis_url")()}
    return {}


@pytest.fixture(scope="module")
def jobs_gateway(start_gateway, store_env: dict[str, str]):
    return start_gateway({**JOB_ENV, **store_env})


@pytest.fixture
def own_store_env(store_env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """``store_env`` for gateways of one test only: with Redis, a database no other gateway
    uses (gateways on one database share jobs, and their workers would take these)."""
    if "I2V_REDIS_URL" in store_env:
        return {"I2V_REDIS_URL": request.getfixturevalue("new_redis_url")()}
    return store_env
