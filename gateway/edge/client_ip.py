"""The caller's address, and the CIDR allow-list applied to it.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only when the direct peer is a
configured proxy (I2V_TRUSTED_PROXIES); otherwise anyone could claim any address, or claim TLS.
(uvicorn's own proxy headers stay off: it would trust every loopback peer.)"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import send_error

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Kubernetes and load balancers probe these; they reveal nothing and run no model.
OPEN_PATHS = ("/healthz", "/readyz")


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip()]


def _in(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(scope: Scope, trusted_proxies: list[Network]) -> str:
    """The peer, or the nearest untrusted hop of ``X-Forwarded-For`` when the peer is a proxy."""
    peer = scope["client"][0] if scope.get("client") else "unknown"
    if not _in(peer, trusted_proxies):
        return peer
    forwarded = [value.decode("latin-1") for key, value in scope["headers"] if key == b"x-forwarded-for"]
    hops = [hop.strip() for header in forwarded for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):  # the right-most hops were added by our own proxies
        if not _in(hop, trusted_proxies):
            return hop
    return peer


def forwarded_scheme(scope: Scope, trusted_proxies: list[Network]) -> str | None:
    """The scheme the browser used, as the trusted proxy in front says (its ``X-Forwarded-Proto``,
    the right-most value when proxies are chained); None when the peer is not a trusted proxy."""
    peer = scope["client"][0] if scope.get("client") else "unknown"
    if not _in(peer, trusted_proxies):
        return None
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == b"x-forwarded-proto"]
    schemes = [part.strip().lower() for value in values for part in value.split(",") if part.strip()]
    return schemes[-1] if schemes and schemes[-1] in ("http", "https") else None


class ClientAddressMiddleware:
    """Puts the caller's address in ``scope["state"]["client_ip"]``, the scheme a trusted proxy
    was reached with in ``scope["scheme"]`` (so URLs, the UI's Origin check and its Secure cookie
    follow TLS), and refuses addresses outside the allow-list (403) on every path but the health
    probes."""

    def __init__(self, app: ASGIApp, allowlist: list[Network], trusted_proxies: list[Network]) -> None:
        self.app = app
        self.allowlist = allowlist
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = client_address(scope, self.trusted_proxies)
        scope.setdefault("state", {})["client_ip"] = address
        scheme = forwarded_scheme(scope, self.trusted_proxies)
        if scheme is not None:
            scope["scheme"] = scheme
        if self.allowlist and scope["path"] not in OPEN_PATHS and not _in(address, self.allowlist):
            await send_error(send, 403, "your address is not allowed to use this API")
            return
        await self.app(scope, receive, send)
