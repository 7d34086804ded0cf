"""Errors raised by the client: the inverse of the gateway's status mapping."""

from __future__ import annotations


class I2VError(Exception):
    """The API answered with an error; ``status`` is the HTTP status, ``message`` its reason."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after


class InvalidRequestError(I2VError):
    """400, 413, 422: fix the request."""


class AuthenticationError(I2VError):
    """401, 403: check the token."""


class RateLimitedError(I2VError):
    """429: wait ``retry_after`` seconds."""


class ServiceUnavailableError(I2VError):
    """502, 503: the model failed, is not ready or is at capacity; retry later."""


class GenerationTimeoutError(I2VError):
    """504: the model did not finish in time."""


_BY_STATUS: dict[int, type[I2VError]] = {
    400: InvalidRequestError, 413: InvalidRequestError, 422: InvalidRequestError,
    401: AuthenticationError, 403: AuthenticationError, 429: RateLimitedError,
    502: ServiceUnavailableError, 503: ServiceUnavailableError, 504: GenerationTimeoutError,
}


def parse_error(status: int, body: object, retry_after: str | None = None) -> I2VError:
    """Build the error for an HTTP status and the decoded JSON body (or text)."""
    message = body.get("message") if isinstance(body, dict) else None
    if not message:
        message = str(body) if body else f"HTTP {status}"
    try:
        retry = float(retry_after) if retry_after is not None else None
    except ValueError:
        retry = None
    return _BY_STATUS.get(status, I2VError)(status, message, retry)
