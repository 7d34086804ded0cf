"""The client's error mapping is the inverse of the gateway's."""

from __future__ import annotations

import pytest

from i2v_client import (
    AuthenticationError,
    GenerationTimeoutError,
    I2VError,
    InvalidRequestError,
    RateLimitedError,
    ServiceUnavailableError,
    parse_error,
)


@pytest.mark.parametrize("status, kind", [
    (400, InvalidRequestError), (413, InvalidRequestError), (422, InvalidRequestError),
    (401, AuthenticationError), (403, AuthenticationError), (429, RateLimitedError),
    (502, ServiceUnavailableError), (503, ServiceUnavailableError), (504, GenerationTimeoutError), (418, I2VError),
])
def test_status_maps_to_error_class(status: int, kind: type) -> None:
    error = parse_error(status, {"success": False, "message": "because"}, "7")
    assert type(error) is kind and error.message == "because" and error.retry_after == 7.0


def test_non_json_bodies_still_give_a_message() -> None:
    assert parse_error(502, "Bad Gateway").message == "Bad Gateway"
    assert parse_error(500, None).message == "HTTP 500"
