"""HMAC request signing as the gateway checks it (``gateway/signing.py``, SECURITY.md)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time


def signature_headers(secret: str, method: str, path: str, query: str, body: bytes,
                      now: float | None = None) -> dict[str, str]:
    """The three X-Signature headers for one request; a fresh nonce each call."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(18)
    canonical = "\n".join((method.upper(), path, query, timestamp, nonce, hashlib.sha256(body).hexdigest()))
    digest = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return {"X-Signature-Timestamp": timestamp, "X-Signature-Nonce": nonce, "X-Signature": f"v1={digest}"}
