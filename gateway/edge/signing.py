r"""Optional HMAC request signing with replay protection.

When ``I2V_REQUEST_SIGNING_SECRET`` is set, every ``/api`` request carries:

- ``X-Signature-Timestamp``: Unix seconds (a decimal integer; signed as sent); refused when
  further than the window from now, or not a finite number;
- ``X-Signature-Nonce``: a fresh random string (8 to 128 of ``A-Z a-z 0-9 _ - . ~``); refused
  when seen before;
- ``X-Signature``: ``v1=`` + lowercase hex HMAC-SHA256, keyed with the secret's UTF-8 bytes, over
  ``canonical_request`` below.

The canonical string is six lines joined by ``\n`` (no trailing newline), UTF-8 encoded: the
method in upper case; the path as the framework gives it (percent-decoded as UTF-8, with ``?``,
``#`` and ``\`` encoded again as ``%3F``, ``%23``, ``%5C``: Starlette's ``request.url.path``); the
query string exactly as sent (no ``?``, not decoded, not reordered; empty when there is none);
the two headers above as sent; the lowercase hex SHA-256 of the raw body (of no bytes when there
is no body). SECURITY.md states it for client authors; docs/signing_vectors.json has worked
examples that tests/gateway/test_signing_vectors.py checks against this module and the client.

Nonces are remembered for twice the window (in Redis when configured, so a request replayed
to another replica is refused too), which with the timestamp check refuses every replay.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time

import redis.asyncio as aioredis
from fastapi import Request

from gateway.edge.state import edge_services
from gateway.errors import UnauthorizedError

TIMESTAMP, NONCE, SIGNATURE = "x-signature-timestamp", "x-signature-nonce", "x-signature"
_NONCE_FORMAT = re.compile(r"[A-Za-z0-9_\-.~]{8,128}")


def canonical_request(method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What is signed: method, path, query string, timestamp, nonce and the body's SHA-256."""
    return "\n".join((method.upper(), path, query, timestamp, nonce, hashlib.sha256(body).hexdigest())).encode()


def signature(secret: str, canonical: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


class MemoryNonceStore:
    """Nonces of one gateway process, forgotten after their time to live."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    async def first_use(self, nonce: str, ttl_s: float) -> bool:
        now = time.monotonic()
        if len(self._seen) > 10_000:  # drop expired ones now and then
            self._seen = {n: until for n, until in self._seen.items() if until > now}
        if self._seen.get(nonce, 0) > now:
            return False
        self._seen[nonce] = now + ttl_s
        return True


class RedisNonceStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def first_use(self, nonce: str, ttl_s: float) -> bool:
        return bool(await self._redis.set(f"i2v:nonce:{nonce}", b"1", nx=True, ex=max(1, int(ttl_s))))


async def require_signature(request: Request) -> None:
    """A dependency of the /api routers; does nothing unless signing is configured."""
    edge = edge_services(request)
    settings = edge.settings
    if settings.request_signing_secret is None:
        return
    timestamp, nonce, presented = (request.headers.get(name) for name in (TIMESTAMP, NONCE, SIGNATURE))
    if not (timestamp and nonce and presented):
        raise UnauthorizedError("this gateway requires signed requests: send X-Signature-Timestamp, "
                                "X-Signature-Nonce and X-Signature")
    try:
        skew = abs(time.time() - float(timestamp))
    except ValueError:
        skew = math.nan
    if not math.isfinite(skew):  # "nan" would pass every comparison below, and with it any replay
        raise UnauthorizedError("X-Signature-Timestamp must be Unix seconds")
    if skew > settings.request_signing_window_s:
        raise UnauthorizedError(f"the signature timestamp is {skew:.0f} s away from the gateway's clock; "
                                f"the window is {settings.request_signing_window_s:.0f} s")
    if not _NONCE_FORMAT.fullmatch(nonce):
        raise UnauthorizedError("X-Signature-Nonce must be 8 to 128 URL-safe characters")
    canonical = canonical_request(request.method, request.url.path, request.url.query, timestamp, nonce,
                                  await request.body())
    expected = signature(settings.request_signing_secret.get_secret_value(), canonical)
    if not hmac.compare_digest(expected.encode(), presented.encode()):
        raise UnauthorizedError("the request signature does not match")
    # Only a correctly signed request uses up its nonce, so forged ones cannot burn real nonces.
    if not await edge.nonces.first_use(nonce, 2 * settings.request_signing_window_s):
        raise UnauthorizedError("this request was already received (nonce reused): replays are refused")
