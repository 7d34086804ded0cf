"""One log line per request: method, path, status, time and the caller's key name. Never
the query string, headers or body, so tokens (``?token=``) and prompts stay out of the logs."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("gateway.access")


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # When the request arrived, for deadlines counted from then (Cancel-After on a generate
        # that first waited for a slot).
        scope.setdefault("state", {})["received_at"] = time.monotonic()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            # request.state lives in scope["state"]; auth puts the key's name there.
            state = scope.get("state", {})
            fields = {"method": scope["method"], "path": scope["path"], "status": status,
                      "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                      "key": state.get("caller", "-"), "ip": state.get("client_ip", "-")}
            logger.info("%(method)s %(path)s %(status)d %(duration_ms).1fms key=%(key)s ip=%(ip)s", fields,
                        extra=fields)
