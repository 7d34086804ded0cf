"""Requests that end before their answer does, which are not server errors: a client that went
away mid-request is logged and counted as 499 (client closed request, as nginx and Envoy count
it), and a streamed answer cut by a graceful stop is ended properly (its client reconnects)."""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLIENT_CLOSED_REQUEST = 499


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready; its work is cancelled."""


class ClosingMiddleware:
    """Inside the request log and the metrics, which see the 499 it answers for a
    ``ClientDisconnected`` (nobody reads that answer: uvicorn drops it). A stream the app left
    open at a graceful stop gets its final empty chunk, so the server does not report an
    incomplete response and the client sees a clean end it resumes from."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = completed = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, completed
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                completed = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except (ClientDisconnected, ClientDisconnect):  # the latter: gone while its body was read
            if not started:
                await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST, "headers": []})
                await send({"type": "http.response.body", "body": b""})
            return
        if started and not completed:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
