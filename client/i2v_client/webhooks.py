"""Verify the gateway's webhook deliveries (Standard Webhooks, https://www.standardwebhooks.com/).

The signature is ``v1,`` + base64 HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}``
with the secret (``whsec_`` + base64 key). Written with hmac and hashlib, so the client needs no
extra dependency; tests check it against the ``standardwebhooks`` package the gateway signs with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from i2v_client.models import WebhookEvent

TOLERANCE_S = 300  # Standard Webhooks' default: older (or future) timestamps are refused, against replays


class WebhookVerificationError(Exception):
    """The delivery is not from the gateway, was altered, or is too old (or from the future)."""


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("the webhook secret is not whsec_ followed by base64") from None


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``webhook-signature`` value for one delivery (what the gateway sends)."""
    payload = body.encode() if isinstance(body, str) else body
    signed = f"{webhook_id}.{timestamp}.".encode() + payload
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def verify_webhook(secret: str, body: bytes | str, headers: Mapping[str, str], *, tolerance_s: float = TOLERANCE_S,
                   now: float | None = None) -> WebhookEvent:
    """The delivery's event if ``headers`` carry a valid signature of ``body``; else
    ``WebhookVerificationError``. Pass the body exactly as received (bytes), before any JSON parsing."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        webhook_id, timestamp_text, signatures = (lowered[name] for name in
                                                  ("webhook-id", "webhook-timestamp", "webhook-signature"))
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing}") from None
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError(f"webhook-timestamp is more than {tolerance_s:g} s from now")
    expected = sign(secret, webhook_id, timestamp, body).encode()
    # Several space-separated signatures may come (a secret being rotated); one match is enough.
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in signatures.split()):
        raise WebhookVerificationError("no matching signature")
    return WebhookEvent.model_validate_json(body)
