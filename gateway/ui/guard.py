"""The UI's own edge, in front of everything under ``/ui``: session, CSRF and file-route checks.

Gradio's routes are many and change between releases, so this guards the whole prefix rather
than each route: state-changing requests need an Origin (or Referer) of this gateway, every
request but the sign-in page needs a valid session, Gradio's proxy and tooling routes are off,
and its file routes serve only from the folders the UI owns."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import send_error
from gateway.ui.actions import INPUTS_FOLDER, owner_tag
from gateway.ui.login import LOGIN_PATH, UI_PATH
from gateway.ui.shutdown import is_stream

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({LOGIN_PATH, f"{LOGIN_PATH}/"})
# Gradio features this UI does not use: fetching other sites, MCP, monitoring, in-browser code
# editing, run history. Refused whatever a future release does with them.
DENIED_PARTS = ("/proxy=", "/gradio_api/mcp", "/monitoring", "/vibe-", "/undo-vibe-edit", "/dev/reload",
                "/run-history", "/gradio_api/runs")
FILE_MARKERS = ("/file=", "/gradio_api/file/")
# The signed-in page and its configuration: never from a cache after sign-out.
NO_STORE_PATHS = frozenset({UI_PATH, f"{UI_PATH}/", f"{UI_PATH}/config", f"{UI_PATH}/gradio_api/info"})
# The page shows this (in the user's language) when a call answers 401: signed out, sign in again.
SIGNED_OUT = "signed out: sign in again (/ui/login)"


def _no_store(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
            message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
        await send(message)
    return sending


def _decoded(path: str) -> str:
    # Undo any number of percent-encodings (%252e%252e%252f ...), as a lenient server might.
    for _ in range(5):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return path


def file_allowed(path: str, roots: Sequence[Path]) -> bool:
    """A file route's target may be served only when it lies inside one of ``roots``, after decoding
    and resolving links and ``..``; URLs (Gradio proxies those) never."""
    target = _decoded(path)
    if "://" in target or not target:
        return False
    resolved = Path(os.path.realpath(target if os.path.isabs(target) else os.path.join(os.sep, target)))
    return any(resolved.is_relative_to(root) for root in roots) and ".." not in Path(target).parts


def same_origin(scope: Scope, public_base_url: str | None) -> bool:
    """The request's Origin (or, lacking one, its Referer) is this gateway."""
    connection = HTTPConnection(scope)
    claimed = connection.headers.get("origin") or connection.headers.get("referer")
    if not claimed or claimed == "null":
        return False
    parts = urlsplit(claimed)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    own = {f"{connection.url.scheme}://{connection.headers.get('host', '')}".lower()}
    if public_base_url:
        base = urlsplit(public_base_url)
        own.add(f"{base.scheme}://{base.netloc}".lower())
    return origin in own


def kept_picture_of(path: str, caller: str) -> bool:
    """A picture kept for the gallery's reuse (``actions.INPUTS_FOLDER``) is served only to the key
    whose job it was; every other file passes."""
    target = Path(os.path.realpath(_decoded(path)))
    if INPUTS_FOLDER not in target.parts:
        return True
    return f".{owner_tag(caller)}." in target.name


class UiGuardMiddleware:
    def __init__(self, app: ASGIApp, caller: Callable[[HTTPConnection], Awaitable[str | None]],
                 file_roots: Callable[[], Sequence[Path]], public_base_url: str | None,
                 serve_stream: Callable[[ASGIApp, Scope, Receive, Send], Awaitable[None]] | None = None) -> None:
        self.app = app
        self.serve_stream = serve_stream
        self.caller = caller
        self.file_roots = file_roots
        self.public_base_url = public_base_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not (path == UI_PATH or path.startswith(f"{UI_PATH}/")):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # The UI uses none; a websocket would skip the checks below.
            await send({"type": "websocket.close", "code": 1008})
            return
        method = scope.get("method", "GET")
        if method not in SAFE_METHODS and not same_origin(scope, self.public_base_url):
            await send_error(send, 403, "cross-origin request refused: the web UI accepts changes only from "
                                        "its own pages (Origin or Referer of this gateway)")
            return
        if path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        if any(part in path for part in DENIED_PARTS):
            await send_error(send, 404, "not found")
            return
        caller = await self.caller(HTTPConnection(scope))
        if caller is None:
            if method == "GET" and path in (UI_PATH, f"{UI_PATH}/"):
                await send({"type": "http.response.start", "status": 303,
                            "headers": [(b"location", LOGIN_PATH.encode()), (b"cache-control", b"no-store")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await send_error(send, 401, SIGNED_OUT)
            return
        # For Gradio (mount.py reads it as the user) and the access log (the key's name, not "-").
        scope.setdefault("state", {})["caller"] = caller
        if path in NO_STORE_PATHS:
            send = _no_store(send)
        for marker in FILE_MARKERS:
            if marker in path and not (file_allowed(path.split(marker, 1)[1], self.file_roots())
                                       and kept_picture_of(path.split(marker, 1)[1], caller)):
                await send_error(send, 404, "not found")
                return
        if self.serve_stream is not None and is_stream(path):  # ended at SIGTERM (shutdown.py)
            await self.serve_stream(self.app, scope, receive, send)
            return
        await self.app(scope, receive, send)
