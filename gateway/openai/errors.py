"""Errors on ``/v1`` in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

One table (``KINDS``) maps a status to OpenAI's type and code; the SDKs pick their exception class
by status. The native routes keep their own body: the app's handlers are wrapped, not replaced,
and answer as before outside ``/v1``. What the edge's middleware answers before any route runs
(the IP allow-list's 403, the body limit's 413) is rewritten on its way out by
``OpenAIErrorShapeMiddleware``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ApiError, InvalidImageError, PayloadTooLargeError
from gateway.openai.protocol import ErrorBody, VideoCreateRequest, error_body

PREFIX = "/v1"
# status -> (type, code) as OpenAI names them.
KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    409: ("conflict_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "model_error"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}
# The native API's field names, as a /v1 caller knows them.
PARAM_NAMES = {"image_base64": "input_reference", "image": "input_reference", "steps": "num_inference_steps",
               "resolution": "size", "width": "size", "height": "size"}


class InvalidParamError(ApiError):
    """A field of a /v1 request is missing or wrong; ``param`` names it."""

    status = 400
    description = "A field is missing or wrong; error.param names it."

    def __init__(self, message: str, param: str | None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class ModelNotFoundError(ApiError):
    status = 404
    description = "No such video for this key, or no such model."

    def __init__(self, model: str, served: str) -> None:
        super().__init__(f"the model '{model}' does not exist here; this gateway serves '{served}' "
                         "(GET /v1/models lists it and its aliases)")


class NotCompletedError(ApiError):
    """Content asked of a video that has not completed (a retry cannot help until it does)."""

    status = 409
    description = "The video is not completed, or is still stopping."


def kind(status: int) -> tuple[str, str | None]:
    if status in KINDS:
        return KINDS[status]
    return ("invalid_request_error", None) if status < 500 else ("server_error", None)


def param_of(loc: Sequence[Any]) -> str | None:
    """The /v1 name of the field a validation error points at."""
    names = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    if not names:
        return None
    return PARAM_NAMES.get(names[0], names[0])


def _guess_param(exc: ApiError) -> str | None:
    """The field of a native domain error raised under /v1 (its message starts with the field's name)."""
    if isinstance(exc, InvalidParamError):
        return exc.param
    if isinstance(exc, (InvalidImageError, PayloadTooLargeError)) and "image" in exc.message:
        return "input_reference"
    first = exc.message.split(" ", 1)[0].rstrip(":,")
    if exc.status in (400, 422) and (first in PARAM_NAMES or first in VideoCreateRequest.model_fields):
        return PARAM_NAMES.get(first, first)
    return None


def openai_error(status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    status = 400 if status == 422 else status  # OpenAI's clients know a bad field as a 400
    type_, default_code = kind(status)
    headers = dict(headers or {})
    if status == 409:
        # The SDKs retry a 409 (a lock timeout at OpenAI); here one would answer the same.
        headers.setdefault("x-should-retry", "false")
    return JSONResponse(error_body(message, type_, param, code or default_code), status_code=status, headers=headers)


def responses_v1(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a /v1 route: the edge's statuses and ``statuses``, all in OpenAI's shape."""
    return {status: {"model": ErrorBody, "description": kind(status)[0]}
            for status in sorted({400, 401, 403, 413, 429, 503, *statuses})}


def _under_v1(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def install_openai_errors(app: FastAPI) -> None:
    """Wrap the app's exception handlers: under /v1 they answer in OpenAI's shape, elsewhere as before.
    Call after ``install_error_handlers``."""
    for exc_class, handler in list(app.exception_handlers.items()):
        app.exception_handlers[exc_class] = _shaped(handler)


async def _answer(native: Handler, request: Request, exc: Any) -> Response:
    response = native(request, exc)
    return response if isinstance(response, Response) else await response


def _shaped(native: Handler) -> Handler:
    async def handle(request: Request, exc: Any) -> Response:
        if not _under_v1(request.url.path):
            return await _answer(native, request, exc)
        if isinstance(exc, ApiError):
            code = exc.code if isinstance(exc, InvalidParamError) else None
            if isinstance(exc, ModelNotFoundError):
                return openai_error(exc.status, exc.message, "model", "model_not_found", exc.headers)
            return openai_error(exc.status, exc.message, _guess_param(exc), code, exc.headers)
        if isinstance(exc, RequestValidationError):
            errors = exc.errors()
            first = errors[0] if errors else {}
            message = "; ".join(f"{param_of(e.get('loc', ())) or 'body'}: {e.get('msg', 'invalid')}" for e in errors)
            return openai_error(400, f"invalid request: {message}", param_of(first.get("loc", ())))
        response = await _answer(native, request, exc)
        return _reshape(response.status_code, bytes(response.body), dict(response.headers)) or response
    return handle


def _reshape(status: int, body: bytes, headers: dict[str, str]) -> JSONResponse | None:
    """A native error body (``{"success": false, "message": ...}``) in OpenAI's shape; None for anything else."""
    try:
        native = json.loads(body)
    except ValueError:
        return None
    if not isinstance(native, dict) or native.get("success") is not False or "message" not in native:
        return None
    kept = {name: value for name, value in headers.items()
            if name.lower() not in ("content-length", "content-type")}
    return openai_error(status, str(native["message"]), headers=kept)


class OpenAIErrorShapeMiddleware:
    """Rewrites native error bodies answered under /v1 by middleware that runs before the routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _under_v1(scope["path"]):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def reshaping_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held = message  # wait for the body: it may be a native error to rewrite
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in held["headers"]}
            reshaped = _reshape(held["status"], b"".join(chunks), headers)
            if reshaped is None:
                await send(held)
                await send({"type": "http.response.body", "body": b"".join(chunks)})
            else:
                await send({"type": "http.response.start", "status": reshaped.status_code,
                            "headers": reshaped.raw_headers})
                await send({"type": "http.response.body", "body": bytes(reshaped.body)})

        await self.app(scope, receive, reshaping_send)
