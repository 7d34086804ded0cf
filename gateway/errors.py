"""Domain errors and the one table that maps them to HTTP statuses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Send

from gateway.schemas import ErrorResponse


class ApiError(Exception):
    """Base of errors a caller sees; ``status`` is the HTTP status."""

    status = 500
    headers: dict[str, str] = {}

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if headers:
            self.headers = headers


class InvalidImageError(ApiError):
    status = 400


class UnauthorizedError(ApiError):
    status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(ApiError):
    status = 403


class NotFoundError(ApiError):
    status = 404


class ConflictError(ApiError):
    status = 409


class PayloadTooLargeError(ApiError):
    status = 413


class InvalidFieldError(ApiError):
    status = 422


class RateLimitedError(ApiError):
    status = 429


class ModelUnavailableError(ApiError):
    """Triton is down, the model is not ready, or its queue is full."""

    status = 503
    headers = {"Retry-After": "5"}


class QueueFullError(ApiError):
    """The gateway's job queue is full for everyone; a replica or a later retry may take it."""

    status = 503
    headers = {"Retry-After": "30"}


class ModelFailedError(ApiError):
    """The model ran but could not make a video (an upstream failure, not the caller's)."""

    status = 502


class InferenceTimeoutError(ApiError):
    status = 504


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorResponse(message=message).model_dump(), status_code=status, headers=headers)


async def send_error(send: Send, status: int, message: str) -> None:
    """The same error body from ASGI middleware, which answers before any route runs."""
    await error_response(status, message, {"connection": "close"})({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def describe_validation(errors: Sequence[Any]) -> str:
    """Pydantic's error list as one line a person can act on."""
    parts = []
    for error in errors:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves the gateway as ``ErrorResponse`` with its real status."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, describe_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal error; the gateway log has the details")
