"""Request metrics and the two ways Prometheus reads them, neither public by default.

``MetricsMiddleware`` counts and times every request by route template, method, status and the
caller's key name, and answers ``/metrics`` itself when ``I2V_METRICS_TOKEN`` is set (Bearer;
404 otherwise, as for any unknown path, so nothing tells a stranger it exists).
``MetricsPortServer`` serves the same text on ``I2V_METRICS_PORT`` (127.0.0.1 by default), for
a scraper inside the pod or host. The metrics themselves are defined in ``gateway/metrics.py``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from typing import Any

from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import metrics
from gateway.config import Settings
from gateway.errors import STORE_ERRORS, send_error
from gateway.jobs.store import JobStore

logger = logging.getLogger("gateway.metrics")
METRICS_PATH = "/metrics"
# Running jobs and pending webhooks are counted by listing ids; past this many the gauge saturates
# (a deployment with that many in flight has bigger worries than an exact count).
MAX_COUNTED = 10_000


async def job_counts(store: JobStore) -> dict[str, int]:
    """Jobs by state, from the store's own indexes (cheap in SQLite and Redis alike)."""
    return {
        "queued": await store.count_queued(),
        "running": len(await store.due("running", math.inf, limit=MAX_COUNTED)),  # running or cancelling
        "webhook_pending": len(await store.due("webhook", math.inf, limit=MAX_COUNTED)),
    }


async def exposition(app: Any) -> bytes:
    """The metrics text, with the job counts read from the store now."""
    services = getattr(app.state, "services", None)
    if services is not None:
        try:
            metrics.SNAPSHOT.set_jobs(await job_counts(services.store))
        except STORE_ERRORS as exc:  # a scrape still shows everything else; /readyz reports the store
            logger.warning("metrics: job counts unavailable: %s", exc)
    return metrics.render()


def route_template(scope: Scope) -> str:
    """The path pattern the router matched (``/api/v1/jobs/{job_id}``), which it leaves in the
    scope; raw paths would make one series per job id. A mounted app (``/outputs``) leaves its
    prefix in ``root_path`` instead."""
    path = getattr(scope.get("route"), "path", None)
    if not path and "app_root_path" in scope:
        path = scope.get("root_path", "")[len(scope["app_root_path"]):]
    return path or metrics.UNMATCHED_ROUTE


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, token: SecretStr | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH and self.token is not None:
            await self._serve_metrics(scope, send)
            return
        method = scope["method"]
        started = time.perf_counter()
        status = 500
        # The route is known only once the router ran; this one path is needed before that.
        is_generate = method == "POST" and scope["path"] == metrics.GENERATE_ROUTE

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        if is_generate:
            metrics.SYNC_GENERATIONS_OPEN.inc()
        try:
            await self.app(scope, receive, capture)
        finally:
            if is_generate:
                metrics.SYNC_GENERATIONS_OPEN.dec()
            route = route_template(scope)
            caller = scope.get("state", {}).get("caller")  # set by auth (edge/auth.py)
            metrics.HTTP_REQUESTS.labels(route=route, method=method, status=str(status),
                                         key=metrics.key_label(caller)).inc()
            metrics.HTTP_LATENCY.labels(route=route, method=method).observe(time.perf_counter() - started)

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        assert self.token is not None
        presented = dict(scope["headers"]).get(b"authorization", b"")
        expected = b"Bearer " + self.token.get_secret_value().encode()
        if not hmac.compare_digest(presented, expected):
            await send_error(send, 401, "metrics need 'Authorization: Bearer <I2V_METRICS_TOKEN>'")
            return
        body = await exposition(scope["app"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", metrics.CONTENT_TYPE.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class MetricsPortServer:
    """``GET /metrics`` on a port of its own, without auth: bind it where only the scraper reaches.

    A few lines of HTTP/1.0 on asyncio rather than a second uvicorn: a second uvicorn server in
    the same process would take over the signal handlers of the first."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._answer, self.host, self.port)
        logger.info("metrics on http://%s:%d%s", self.host, self.port, METRICS_PATH)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=10)
            while (await asyncio.wait_for(reader.readline(), timeout=10)).strip():
                pass  # headers: nothing in them matters here
            parts = request_line.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == METRICS_PATH:
                status, content_type, body = "200 OK", metrics.CONTENT_TYPE, await exposition(self.app)
            else:
                status, content_type, body = "404 Not Found", "text/plain", b"not found; try /metrics\n"
            writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, UnicodeError):
            pass
        finally:
            writer.close()


async def start_metrics_port(app: Any, settings: Settings) -> MetricsPortServer | None:
    """The metrics port when ``I2V_METRICS_PORT`` is set, listening; else None."""
    if settings.metrics_port is None:
        return None
    server = MetricsPortServer(app, settings.metrics_host, settings.metrics_port)
    await server.start()
    return server
