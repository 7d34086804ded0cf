"""``python -m gateway``: serve the API with uvicorn, configured from ``I2V_*`` variables."""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError

from gateway.app import create_app
from gateway.config import Settings
from gateway.logs import configure_logging


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        messages = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        print(f"gateway: configuration error: {messages}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    config = uvicorn.Config(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info",
                # None: uvicorn's own lines go through our handler too (JSON when configured).
                log_config=None,
                # Our RequestLogMiddleware logs requests; uvicorn's would log ?token= values.
                access_log=False,
                # uvicorn would rewrite the client from X-Forwarded-For for 127.0.0.1 peers;
                # I2V_TRUSTED_PROXIES alone decides whom to believe (gateway/client_ip.py).
                proxy_headers=False,
                # Requests still running at SIGTERM (a synchronous generation) may finish; then the
                # lifespan hands running jobs back to the queue. SSE streams end at once (sse-starlette).
                timeout_graceful_shutdown=settings.shutdown_grace_s)
    sockets = [config.bind_socket()]
    if settings.ui_port is not None:
        # The web UI's own port (scripts/start_app.sh PORT API_PORT): the same app in the same process.
        config.port = settings.ui_port
        sockets.append(config.bind_socket())
    uvicorn.Server(config).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
