"""Domain errors and the one table that maps them to HTTP statuses.

Each error class carries its status and the sentence the OpenAPI document shows for it, so a
route documents exactly the errors it can raise (``responses_for``). Failures of the stores
(SQLite, Redis) are mapped here too, to ``StoreUnavailableError``: one table, one body shape.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Send

from gateway.schemas import ErrorResponse

logger = logging.getLogger("gateway.errors")


class ApiError(Exception):
    """Base of errors a caller sees; ``status`` is the HTTP status, ``description`` its OpenAPI text."""

    status = 500
    description = "Internal error."
    headers: dict[str, str] = {}

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if headers:
            self.headers = headers


class MalformedBodyError(ApiError):
    """A body that is not a JSON object's text: malformed JSON, another content type, or none.
    FastAPI reports these as validation errors; ``malformed_body`` picks them out, so every route
    with a body answers them alike (400, never 422)."""

    status = 400
    description = "The body is not valid JSON."


class InvalidEventIdError(ApiError):
    status = 400
    description = "Last-Event-ID is not the id of an event this job's stream sent."


class InvalidImageError(ApiError):
    status = 400
    description = "The image is not valid base64 or not a readable image."


class UnauthorizedError(ApiError):
    status = 401
    description = "Missing or invalid token (or request signature)."
    headers = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(ApiError):
    status = 403
    description = "The caller's address is outside the IP allow-list."


class NotFoundError(ApiError):
    status = 404
    description = "No such job for this key."


class ConflictError(ApiError):
    status = 409
    description = "The Idempotency-Key was used with a different body."


class PayloadTooLargeError(ApiError):
    status = 413
    description = "The body or the image is too large."


class InvalidFieldError(ApiError):
    status = 422
    description = "A field is out of range or missing."


class RateLimitedError(ApiError):
    status = 429
    description = "Rate limit, concurrent generations or queued jobs of this key exceeded; see Retry-After."


class ModelUnavailableError(ApiError):
    """Triton is down, the model is not ready, or its queue is full."""

    status = 503
    description = "The model is not ready or at capacity; see Retry-After."
    headers = {"Retry-After": "5"}


class ModelProcessLostError(ModelUnavailableError):
    """The model's process died while it made this video (Triton's "Stub process ... is not
    healthy"): it is being restarted, and a job runs again (counted like a lost worker)."""

    description = "The model's process stopped and is being restarted; see Retry-After."


class QueueFullError(ApiError):
    """The gateway's job queue is full for everyone; a replica or a later retry may take it."""

    status = 503
    description = "The job queue is full; see Retry-After."
    headers = {"Retry-After": "30"}


class StoreUnavailableError(ApiError):
    """The job store (or the Redis behind limits and nonces) cannot be reached; a retry may succeed."""

    status = 503
    description = "The job store is unavailable; see Retry-After."
    headers = {"Retry-After": "5"}


class ModelFailedError(ApiError):
    """The model ran but could not make a video (an upstream failure, not the caller's)."""

    status = 502
    description = "The model failed to make a video."


class InferenceTimeoutError(ApiError):
    status = 504
    description = "The model did not finish in time."



# --- API keys managed at run time (gateway/tenants, issue 24) ---

class MissingScopeError(ForbiddenError):
    description = "The key lacks the scope this route needs (generate, read or admin)."


class KeyNotFoundError(NotFoundError):
    description = "No such API key."


class ReadOnlyKeyError(ConflictError):
    description = "Keys from the environment or a key file change only in the configuration."


class QuotaExceededError(RateLimitedError):
    description = "A quota of the key (videos or compute units a day or month) is used up; see Retry-After."

# Exceptions of the stores' client libraries, which any layer may let through.
STORE_ERRORS: tuple[type[Exception], ...] = (RedisError, sqlite3.Error)
# What every authenticated /api route can answer before its own work starts.
EDGE_ERRORS: tuple[type[ApiError], ...] = (UnauthorizedError, ForbiddenError, PayloadTooLargeError,
                                           InvalidFieldError, RateLimitedError, StoreUnavailableError)


def responses_for(*errors: type[ApiError]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route from the errors it can raise (the edge's included)."""
    documented: dict[int | str, dict[str, Any]] = {}
    for error in (*EDGE_ERRORS, *errors):
        entry = documented.setdefault(error.status, {"model": ErrorResponse, "description": ""})
        if error.description not in entry["description"]:
            entry["description"] = f"{entry['description']} {error.description}".strip()
    return dict(sorted(documented.items(), key=lambda item: int(item[0])))


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


def malformed_body(exc: RequestValidationError, content_type: str) -> MalformedBodyError | None:
    """The 400 for a body that is no JSON at all, saying where the JSON breaks; None when the
    body was JSON (a wrong field is a 422 then)."""
    for error in exc.errors():
        location = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "it cannot be parsed")
            where = ""
            if len(location) == 2 and isinstance(location[1], int) and isinstance(exc.body, (str, bytes)):
                text = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
                position = location[1]
                line = text.count("\n", 0, position) + 1
                column = position - (text.rfind("\n", 0, position) + 1) + 1
                where = f" at line {line}, column {column} (character {position})"
            return MalformedBodyError(f"the body is malformed JSON: {reason}{where}")
        if location == ("body",) and error.get("type") == "missing":
            return MalformedBodyError("the body is empty; send a JSON object (Content-Type: application/json)")
        json_type = content_type.split(";", 1)[0].strip().lower()
        if location == ("body",) and isinstance(error.get("input"), (str, bytes)) \
                and not (json_type == "application/json" or json_type.endswith("+json")):
            # FastAPI parses JSON only when the Content-Type says so; anything else arrives as text.
            return MalformedBodyError("the body is not JSON; send a JSON object with Content-Type: application/json")
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves the gateway as ``ErrorResponse`` with its real status."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        malformed = malformed_body(exc, request.headers.get("content-type", ""))
        if malformed is not None:
            return error_response(malformed.status, malformed.message)
        return error_response(422, describe_validation(exc.errors()))

    @app.exception_handler(RedisError)
    @app.exception_handler(sqlite3.Error)
    async def _store(_: Request, exc: Exception) -> JSONResponse:
        logger.error("job store error: %s", exc)
        error = StoreUnavailableError("the job store is unavailable; retry shortly")
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal error; the gateway log has the details")
