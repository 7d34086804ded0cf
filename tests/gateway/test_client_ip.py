"""Which address is the caller's, and who may call: the pure parts, then over HTTP."""

from __future__ import annotations

import httpx
import pytest

from gateway.edge.client_ip import client_address, parse_networks

PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.1/32"])


def scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"client": (peer, 5000), "headers": headers}


@pytest.mark.parametrize("peer, forwarded, expected", [
    ("203.0.113.9", None, "203.0.113.9"),
    ("203.0.113.9", "10.1.1.1", "203.0.113.9"),  # untrusted peer: its header is ignored
    ("10.0.0.2", "198.51.100.7", "198.51.100.7"),
    ("10.0.0.2", "1.2.3.4, 198.51.100.7, 10.0.0.9", "198.51.100.7"),  # nearest untrusted hop
    ("10.0.0.2", "not-an-ip", "not-an-ip"),
    ("10.0.0.2", None, "10.0.0.2"),
])
def test_forwarded_for_is_believed_only_from_trusted_proxies(peer, forwarded, expected) -> None:
    assert client_address(scope(peer, forwarded), PROXIES) == expected


@pytest.mark.integration
def test_allow_list_over_http(start_gateway) -> None:
    behind_proxy = start_gateway({"I2V_IP_ALLOWLIST": "198.51.100.0/24", "I2V_TRUSTED_PROXIES": "127.0.0.1/32"})
    direct = start_gateway({"I2V_IP_ALLOWLIST": "198.51.100.0/24"})
    url = "/api/v1/generate"
    with httpx.Client(base_url=behind_proxy.url) as client:
        refused = client.post(url, json={})
        assert refused.status_code == 403 and refused.json()["success"] is False
        assert "address is not allowed" in refused.json()["message"]
        # Allowed through the trusted proxy: the request gets as far as validation.
        assert client.post(url, json={}, headers={"X-Forwarded-For": "198.51.100.20"}).status_code in (401, 422)
        assert client.post(url, json={}, headers={"X-Forwarded-For": "203.0.113.5"}).status_code == 403
        assert client.get("/healthz").status_code == 200  # probes stay open
    with httpx.Client(base_url=direct.url) as client:
        spoofed = client.post(url, json={}, headers={"X-Forwarded-For": "198.51.100.20"})
        assert spoofed.status_code == 403, "X-Forwarded-For from an untrusted peer must be ignored"
    assert "ip=198.51.100.20" in behind_proxy.log_path.read_text()
