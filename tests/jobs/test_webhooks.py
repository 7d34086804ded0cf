"""Callback URL checks and Standard Webhooks signing, without a network."""

from __future__ import annotations

import asyncio

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.errors import InvalidFieldError
from gateway.jobs.webhooks import check_callback_url, sign_event
from tests.jobs.conftest import WEBHOOK_SECRET


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "http://localhost:8000/x", "http://10.0.0.5/x", "http://172.16.3.4/x",
    "http://192.168.1.1/x", "http://169.254.169.254/latest", "http://[::1]/x", "http://[fd00::1]/x",
    "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "http://100.64.0.1/x",
])
def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(InvalidFieldError, match="refused"):
        asyncio.run(check_callback_url(url, allow_private=False))
    assert asyncio.run(check_callback_url(url, allow_private=True)) == url


@pytest.mark.parametrize("url", ["ftp://example.com/x", "/relative", "http://user:pw@example.com/x", "http://"])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidFieldError):
        asyncio.run(check_callback_url(url, allow_private=True))


@pytest.mark.parametrize("url", [
    "http://example.com:99999/", "http://[zz]/", "http://example.com:-1/", "http://example.com:0/",
    "http://example.com:8o/", "http://exa mple.com/", "http://-example.com/", "http://a..b/", "http://[v1.x]/",
    "http://%zz/", "https://" + "a" * 64 + ".com/",
])
@pytest.mark.parametrize("allow_private", [True, False])
def test_ports_out_of_range_and_malformed_hosts_are_a_422_naming_the_field(url: str, allow_private: bool) -> None:
    with pytest.raises(InvalidFieldError, match="callback_url is not a valid URL: its host or its port"):
        asyncio.run(check_callback_url(url, allow_private=allow_private))


@pytest.mark.parametrize("url", ["http://example.com:65535/x", "https://bücher.example/x", "http://[::1]:8080/x",
                                 "http://hooks_1.example.com./x"])
def test_unusual_but_valid_urls_pass(url: str) -> None:
    assert asyncio.run(check_callback_url(url, allow_private=True)) == url


def test_public_literal_address_is_allowed() -> None:
    assert asyncio.run(check_callback_url("https://93.184.215.14/hook", allow_private=False))


def test_signature_verifies_with_the_standard_library_and_detects_tampering() -> None:
    message = sign_event(WEBHOOK_SECRET, "job1_succeeded", "job.succeeded", {"job_id": "job1"})
    assert Webhook(WEBHOOK_SECRET).verify(message.body, message.headers)["data"] == {"job_id": "job1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(message.body.replace("job1", "job2"), message.headers)
    other = "whsec_" + "b" * 44
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(message.body, message.headers)
