"""Job callbacks: refuse URLs that point inside the network, sign per Standard Webhooks, deliver.

Signing uses the ``standardwebhooks`` package (HMAC-SHA256 over ``id.timestamp.body``), so a
receiver verifies with any Standard Webhooks library and the same ``whsec_`` secret.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook as Signer

from gateway.errors import InvalidFieldError
from gateway.jobs.records import DeliveryAttempt


def _address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?")


def _valid_host(hostname: str, bracketed: bool) -> bool:
    """An IP address, or a DNS name (international names in their IDNA form) an HTTP client can
    dial; between brackets only an IPv6 address."""
    try:
        ipaddress.ip_address(hostname.split("%", 1)[0])
        return True
    except ValueError:
        if bracketed:
            return False
    try:
        ascii_name = hostname.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(ascii_name) <= 253 and _HOST_NAME.fullmatch(ascii_name) is not None


async def check_callback_url(url: str, allow_private: bool, field: str = "callback_url") -> str:
    """The URL if it may be called back (or, for ``field`` input_reference, fetched); ``InvalidFieldError``
    (422) if not.

    Every address the host resolves to must be public unless ``allow_private``: loopback,
    private ranges, link-local (cloud metadata at 169.254.169.254) and the like are refused.
    """
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port  # .port raises for a port out of range
    except ValueError:
        raise InvalidFieldError(f"{field} is not a valid URL: its host or its port (1-65535) is malformed") \
            from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise InvalidFieldError(f"{field} must be an absolute http:// or https:// URL")
    if port == 0 or not _valid_host(hostname, bracketed="[" in parts.netloc):
        raise InvalidFieldError(f"{field} is not a valid URL: its host or its port (1-65535) is malformed")
    if parts.username or parts.password:
        raise InvalidFieldError(f"{field} must not carry credentials")
    if allow_private:
        return url
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, hostname, port or 443, 0,
                                        socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidFieldError(f"{field} host {hostname!r} does not resolve") from None
    for info in infos:
        if not _address_is_public(str(info[4][0])):
            raise InvalidFieldError(
                f"{field} resolves to {info[4][0]}, a loopback, private or reserved address; "
                "those are refused unless I2V_WEBHOOK_ALLOW_PRIVATE is set")
    return url


@dataclass(frozen=True)
class SignedMessage:
    headers: dict[str, str]
    body: str


def sign_event(secret: str, message_id: str, event: str, data: dict, now: float | None = None) -> SignedMessage:
    """A Standard Webhooks message: ``{type, timestamp, data}`` with its three headers."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    body = json.dumps({"type": event, "timestamp": moment.isoformat(), "data": data}, separators=(",", ":"))
    signature = Signer(secret).sign(message_id, moment, body)
    return SignedMessage(headers={
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "i2v-gateway-webhooks/1",
    }, body=body)


async def deliver(client: httpx.AsyncClient, url: str, message: SignedMessage, timeout_s: float) -> DeliveryAttempt:
    """One POST; any 2xx is a success. Redirects are not followed (they could lead inside)."""
    started = time.time()
    try:
        response = await client.post(url, content=message.body, headers=message.headers, timeout=timeout_s,
                                      follow_redirects=False)
        status, error = response.status_code, None if response.is_success else f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"[:300]
    return DeliveryAttempt(at=started, status_code=status, error=error,
                           duration_ms=int((time.time() - started) * 1000))
