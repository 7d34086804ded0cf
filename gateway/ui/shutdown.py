"""Open UI tabs must not hold up a graceful stop.

Each tab keeps streams open (Gradio's queue stream while an event runs, and its heartbeat), and
uvicorn waits at SIGTERM for every response in progress to end, for up to I2V_SHUTDOWN_GRACE_S:
a tab left open kept a gateway stopping for minutes. Gradio ends those streams only when its own
server stops, which a mounted Gradio never sees. So the UI's streams are served through
``serve_stream``: as soon as uvicorn is asked to exit, each page is sent Gradio's "server
stopped" message and its streams are ended from here. Requests in progress that are not UI
streams (an API generation) still get their grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any, Literal

import gradio as gr
from gradio.server_messages import BaseMessage
from gradio_client.utils import ServerMessage
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLL_S = 0.5
STREAM_PARTS = ("/gradio_api/queue/data", "/gradio_api/heartbeat/")
logger = logging.getLogger("gateway.ui")


class _ServerStopped(BaseMessage):
    msg: Literal[ServerMessage.server_stopped] = ServerMessage.server_stopped  # type: ignore[valid-type]


def server_stopping() -> bool:
    """Whether uvicorn has been asked to exit: its SIGTERM handler is its Server's bound
    ``handle_exit`` (sse-starlette reads it the same way to end the API's event streams)."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return AppStatus.should_exit or bool(getattr(server, "should_exit", False))


def is_stream(path: str) -> bool:
    return any(part in path for part in STREAM_PARTS)


class EndStreamsAtShutdown:
    def __init__(self, page: gr.Blocks, gradio_app: Any) -> None:
        self.page = page
        self.gradio_app = gradio_app
        self._watch: asyncio.Task | None = None
        self._stopping: asyncio.Event | None = None

    def ensure_watching(self) -> None:
        """Start the watch in the serving event loop (called from the UI's requests)."""
        if self._watch is None:
            self._stopping = asyncio.Event()
            self._watch = asyncio.get_running_loop().create_task(self._wait_for_exit())

    async def _wait_for_exit(self) -> None:
        while not server_stopping():
            await asyncio.sleep(POLL_S)
        self.end_streams()

    def end_streams(self) -> None:
        queue = self.page._queue
        sessions = list(queue.pending_messages_per_session.values())
        for messages in sessions:  # the page hears why its stream ends
            messages.put_nowait(_ServerStopped())
        stop_event = getattr(self.gradio_app, "stop_event", None)
        if isinstance(stop_event, asyncio.Event):
            stop_event.set()
        if self._stopping is not None:
            self._stopping.set()
        logger.info("stopping: ending the streams of %d web UI page(s)", len(sessions))

    async def serve_stream(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a UI stream, and end it when the server is asked to stop."""
        self.ensure_watching()
        assert self._stopping is not None
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        serving = asyncio.ensure_future(app(scope, receive, sending))
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            stopping.cancel()
            serving.result()
            return
        await asyncio.sleep(POLL_S)  # time for the "server stopped" message to go out
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await serving
        if started:
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
