"""A real HTTP server that receives webhooks, optionally failing the first few deliveries."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float


class WebhookReceiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    status = 500 if len(receiver.deliveries) < receiver.fail_first else 204
                    receiver.deliveries.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body,
                                                        status, time.time()))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/i2v"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 60) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.deliveries) >= count:
                    return list(self.deliveries)
            time.sleep(0.1)
        raise TimeoutError(f"{len(self.deliveries)} of {count} webhook deliveries after {timeout} s")

    def wait_for_type(self, event_type: str, timeout: float = 300) -> list[Delivery]:
        """Every delivery up to and including the first whose body's type is ``event_type``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for index, delivery in enumerate(self.deliveries):
                    if json.loads(delivery.body).get("type") == event_type:
                        return self.deliveries[:index + 1]
            time.sleep(0.1)
        raise TimeoutError(f"no {event_type} webhook within {timeout} s; got {len(self.deliveries)} deliveries")
