"""Open UI tabs must not hold up a graceful stop.

Each tab keeps two streams open (Gradio's queue stream and its heartbeat), and uvicorn waits at
SIGTERM for every connection to close, for up to I2V_SHUTDOWN_GRACE_S: a tab left open kept a
gateway stopping for minutes. Gradio ends those streams only when its own server stops, which a
mounted Gradio never sees, so this watch tells it: as soon as uvicorn is asked to exit, every
queue stream gets Gradio's "server stopped" message (the page shows it and stops listening) and
the heartbeats end. Requests in progress (an API generation) still get their grace.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Literal

import gradio as gr
from gradio.server_messages import BaseMessage
from gradio_client.utils import ServerMessage
from sse_starlette.sse import AppStatus

POLL_S = 0.5


class _ServerStopped(BaseMessage):
    msg: Literal[ServerMessage.server_stopped] = ServerMessage.server_stopped  # type: ignore[valid-type]


def server_stopping() -> bool:
    """Whether uvicorn has been asked to exit: its SIGTERM handler is its Server's bound
    ``handle_exit`` (sse-starlette reads it the same way to end the API's event streams)."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return AppStatus.should_exit or bool(getattr(server, "should_exit", False))


class EndStreamsAtShutdown:
    def __init__(self, page: gr.Blocks, gradio_app: Any) -> None:
        self.page = page
        self.gradio_app = gradio_app
        self._watch: asyncio.Task | None = None

    def ensure_watching(self) -> None:
        """Start the watch in the serving event loop (called from the UI's first request)."""
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._wait_for_exit())

    async def _wait_for_exit(self) -> None:
        while not server_stopping():
            await asyncio.sleep(POLL_S)
        self.end_streams()

    def end_streams(self) -> None:
        queue = self.page._queue
        for messages in list(queue.pending_messages_per_session.values()):
            messages.put_nowait(_ServerStopped())
        stop_event = getattr(self.gradio_app, "stop_event", None)
        if isinstance(stop_event, asyncio.Event):
            stop_event.set()
