"""Refuse oversized request bodies (413) before they are read into memory.

The refused body is still read (and dropped), up to a bound, before the 413 is sent: a client
that writes its whole body before reading the answer (httpx, fetch) would otherwise find the
connection closed under its upload and report a bare connection error (which clients retry)
instead of the 413. A client that sent ``Expect: 100-continue`` is answered at once instead."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import send_error

# Reading a refused body costs bandwidth, not memory; past these it is cut off (a hostile or very
# slow upload), and that client sees the connection close.
DRAIN_MIN_BYTES = 64 * 1024 * 1024
DRAIN_MAX_S = 30.0


class _BodyTooLarge(HTTPException):
    # An HTTPException, because FastAPI turns any other error raised while it reads the
    # body into a 400; this one reaches the error handlers as a 413.
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is larger than {max_bytes} bytes")


class BodySizeLimitMiddleware:
    """Checks ``Content-Length`` up front and counts streamed (chunked) bodies as they arrive."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = max(4 * max_bytes, DRAIN_MIN_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # Reading it would ask a 100-continue client for the body it offered to hold back.
            if headers.get(b"expect", b"").lower() != b"100-continue" and int(declared) <= self.drain_bytes:
                await self._drain(receive, 0)
            await self._refuse(send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._drain(receive, received)
                await self._refuse(send)

    async def _drain(self, receive: Receive, already: int) -> None:
        """Read the rest of the body and drop it, up to the bounds."""
        async def read_rest() -> None:
            taken = already
            while taken <= self.drain_bytes:
                message = await receive()
                if message["type"] != "http.request":
                    return
                taken += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(read_rest(), DRAIN_MAX_S)

    async def _refuse(self, send: Send) -> None:
        await send_error(send, 413, f"request body is larger than {self.max_bytes} bytes")
