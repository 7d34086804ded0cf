"""The client's error classes are the inverse of the gateway's status table."""

from __future__ import annotations

import email.utils
import time

import pytest

from i2v_client import (
    AuthenticationError,
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    GatewayTimeout,
    GenerationTimeoutError,
    I2VError,
    InternalServerError,
    InvalidRequestError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RateLimitedError,
    ServiceUnavailable,
    ServiceUnavailableError,
    Unauthorized,
    Unprocessable,
    parse_error,
)
from i2v_client.errors import parse_retry_after


@pytest.mark.parametrize("status, kind, group", [
    (400, BadRequest, InvalidRequestError), (401, Unauthorized, AuthenticationError),
    (403, Forbidden, AuthenticationError), (404, NotFound, I2VError), (409, Conflict, InvalidRequestError),
    (413, PayloadTooLarge, InvalidRequestError), (422, Unprocessable, InvalidRequestError),
    (429, RateLimited, RateLimitedError), (500, InternalServerError, I2VError),
    (502, BadGateway, ServiceUnavailableError), (503, ServiceUnavailable, ServiceUnavailableError),
    (504, GatewayTimeout, GenerationTimeoutError), (418, I2VError, I2VError),
])
def test_status_maps_to_one_class_under_its_0_2_group(status: int, kind: type, group: type) -> None:
    error = parse_error(status, {"success": False, "message": "because"}, "7")
    assert type(error) is kind and isinstance(error, group)
    assert (error.status, error.message, error.retry_after) == (status, "because", 7.0)


def test_every_gateway_status_has_its_class() -> None:
    from gateway import errors as gateway_errors

    statuses = {cls.status for cls in vars(gateway_errors).values()
                if isinstance(cls, type) and issubclass(cls, gateway_errors.ApiError)}
    assert all(type(parse_error(status, None)) is not I2VError for status in statuses), statuses


def test_non_json_bodies_still_give_a_message() -> None:
    assert parse_error(502, "Bad Gateway").message == "Bad Gateway"
    assert parse_error(500, None).message == "HTTP 500"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = time.time()
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
