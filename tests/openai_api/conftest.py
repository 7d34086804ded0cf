"""The /v1 tests' gateway: its own keys, so that lists hold only these tests' videos."""

from __future__ import annotations

import pytest

from i2v_tools.servers import GatewayServer

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef"
LIMITED = "limited-key-0123456789ab"
PLAIN = "plain-key-0123456789abcd"
METRICS_TOKEN = "metrics-token-0123456789"


@pytest.fixture(scope="package")
def v1_gateway(start_gateway) -> GatewayServer:
    """Own keys (so lists hold only these tests' videos), the web UI on, private image URLs allowed
    (the image server below is on loopback)."""
    return start_gateway({"I2V_API_KEYS": f"alice={ALICE},bob={BOB}", "I2V_UI_ENABLED": "true",
                          "I2V_WEBHOOK_ALLOW_PRIVATE": "true", "I2V_RATE_LIMIT_PER_MINUTE": "0",
                          "I2V_CACHE_MAX_BYTES": "0", "I2V_METRICS_TOKEN": METRICS_TOKEN,
                          # Above the model's max_pixels (1638400 in the CPU config): the model's limit holds.
                          "I2V_MAX_VIDEO_PIXELS": "4000000"})


@pytest.fixture(scope="package")
def strict_gateway(start_gateway) -> GatewayServer:
    """One submission per key (burst 1), the allow-list for 127.0.0.1 believed through X-Forwarded-For,
    private image URLs refused (the default), bodies up to 200 kB."""
    return start_gateway({"I2V_API_KEYS": f"limited={LIMITED},plain={PLAIN}", "I2V_RATE_LIMIT_PER_MINUTE": "1",
                          "I2V_RATE_LIMIT_BURST": "1", "I2V_IP_ALLOWLIST": "127.0.0.1/32",
                          "I2V_TRUSTED_PROXIES": "127.0.0.1/32", "I2V_MAX_BODY_BYTES": "200000"})
