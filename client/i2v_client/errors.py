"""Errors raised by the client: the inverse of the gateway's status table (``gateway/errors.py``).

One class per status, all under ``I2VError`` (``status``, ``message``, ``retry_after``). The
0.2 names (``InvalidRequestError``, ``AuthenticationError``, ...) stay as the parents of the
status classes, so code that caught them still catches the same failures.

Failures without an answer are ``I2VError`` too (as openai-python's ``APIConnectionError`` and
``APITimeoutError``): ``APIConnectionError`` (refused, DNS, TLS, a connection cut mid-answer),
``APITimeoutError`` under it, ``WaitTimeoutError`` when ``wait`` outlives its ``timeout``, and
``ConfigurationError`` for a client that cannot work as configured. Their ``status`` is None and
the underlying exception is their ``__cause__``.
"""

from __future__ import annotations

import email.utils
import time


class I2VError(Exception):
    """A call failed; ``status`` is the HTTP status of the answer (None: no answer), ``message`` its reason."""

    def __init__(self, status: int | None, message: str, retry_after: float | None = None) -> None:
        super().__init__(message if status is None else f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after


# The 0.2 groups, kept as parents.
class InvalidRequestError(I2VError):
    """400, 409, 413, 422: fix the request."""


class AuthenticationError(I2VError):
    """401, 403: check the token."""


class RateLimitedError(I2VError):
    """429: wait ``retry_after`` seconds."""


class ServiceUnavailableError(I2VError):
    """502, 503: the model failed, is not ready or is at capacity; retry later."""


class GenerationTimeoutError(I2VError):
    """504: the model did not finish in time."""


# One class per status the gateway answers.
class BadRequest(InvalidRequestError):
    """400: the image is not valid base64 or not a readable image, or the body is not JSON."""


class Unauthorized(AuthenticationError):
    """401: missing or invalid token (or request signature)."""


class Forbidden(AuthenticationError):
    """403: the caller's address is outside the gateway's IP allow-list."""


class NotFound(I2VError):
    """404: no such job for this key."""


class Conflict(InvalidRequestError):
    """409: the Idempotency-Key was used with a different body."""


class PayloadTooLarge(InvalidRequestError):
    """413: the body or the image is too large."""


class Unprocessable(InvalidRequestError):
    """422: a field is missing, unknown or out of range (the message names it)."""


class RateLimited(RateLimitedError):
    """429: rate limit, concurrent generations or queued jobs of this key exceeded."""


class InternalServerError(I2VError):
    """500: an unexpected gateway error (its log has the details)."""


class BadGateway(ServiceUnavailableError):
    """502: the model ran but could not make a video."""


class ServiceUnavailable(ServiceUnavailableError):
    """503: the model is not ready or at capacity, or the job store is away."""


class GatewayTimeout(GenerationTimeoutError):
    """504: the model did not finish in time."""


# Failures without an answer.
class APIConnectionError(I2VError):
    """The gateway could not be reached or the connection broke before the answer; ``__cause__``
    is the network error. Idempotent calls were retried first (``max_retries``)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class APITimeoutError(APIConnectionError):
    """The call's ``timeout`` passed (connecting, or waiting for the answer)."""


class WaitTimeoutError(APITimeoutError, TimeoutError):
    """``wait`` reached the caller's ``timeout`` before the job ended (the job goes on: ``job_id``).
    A ``TimeoutError`` too, as the 0.3 client raised."""

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class ConfigurationError(I2VError, ValueError):
    """The client cannot work as configured (a malformed URL, a scheme other than http(s), a
    token with a line break): raised at once, never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


BY_STATUS: dict[int, type[I2VError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 422: Unprocessable, 429: RateLimited, 500: InternalServerError,
    502: BadGateway, 503: ServiceUnavailable, 504: GatewayTimeout,
}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_error(status: int, body: object, retry_after: str | None = None) -> I2VError:
    """Build the error for an HTTP status and the decoded JSON body (or text)."""
    message = body.get("message") if isinstance(body, dict) else None
    if not message:
        message = str(body) if body else f"HTTP {status}"
    return BY_STATUS.get(status, I2VError)(status, message, parse_retry_after(retry_after))
