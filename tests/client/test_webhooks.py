"""The SDK's webhook verifier (hmac and hashlib only) agrees with the standardwebhooks package,
which the gateway signs with; a real delivery is checked in test_sdk.py."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from i2v_client import WebhookVerificationError, verify_webhook
from i2v_client.webhooks import sign

SECRET = "whsec_" + base64.b64encode(b"a-webhook-secret-of-32-bytes-ok!").decode()
BODY = json.dumps({"type": "job.succeeded", "timestamp": "2026-01-01T00:00:00Z", "data": {"job_id": "j1"}})


def headers(signature: str, timestamp: int, webhook_id: str = "msg_1") -> dict[str, str]:
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_a_standardwebhooks_signature_verifies() -> None:
    now = int(time.time())
    signature = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(now, tz=timezone.utc), BODY)
    event = verify_webhook(SECRET, BODY.encode(), headers(signature, now))
    assert event.type == "job.succeeded" and event.data["job_id"] == "j1"


def test_our_signature_verifies_with_standardwebhooks() -> None:
    now = int(time.time())
    Webhook(SECRET).verify(BODY, headers(sign(SECRET, "msg_1", now, BODY), now))


@pytest.mark.parametrize("change", ["body", "secret", "old", "future", "missing", "id"])
def test_anything_altered_is_refused(change: str) -> None:
    now = int(time.time())
    body, secret, sent = BODY, SECRET, headers(sign(SECRET, "msg_1", now, BODY), now)
    if change == "body":
        body = BODY.replace("succeeded", "failed")
    elif change == "secret":
        secret = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    elif change in ("old", "future"):
        moved = now - 301 if change == "old" else now + 301
        sent = headers(sign(SECRET, "msg_1", moved, BODY), moved)
    elif change == "missing":
        del sent["webhook-signature"]
    else:
        sent["webhook-id"] = "msg_2"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, body, sent)


def test_one_matching_signature_of_several_is_enough() -> None:
    now = int(time.time())
    rotated = f"v1,{base64.b64encode(b'x' * 32).decode()} {sign(SECRET, 'msg_1', now, BODY)}"
    assert verify_webhook(SECRET, BODY, headers(rotated, now)).type == "job.succeeded"
