"""``python -m gateway``: serve the API with uvicorn, configured from ``I2V_*`` variables."""

from __future__ import annotations

import argparse
import importlib.util
import sys

import uvicorn
from pydantic import ValidationError

from gateway.app import create_app
from gateway.config import Settings
from gateway.logs import configure_logging


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """No options: everything comes from the environment; --help lists the variables."""
    variables = "\n".join(f"  I2V_{name.upper():<34} {field.description or ''}"
                          for name, field in Settings.model_fields.items())
    parser = argparse.ArgumentParser(
        prog="python -m gateway", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the image-to-video REST API (and the web UI at /ui) with uvicorn.\nConfigured by "
                    "I2V_* environment variables: at least I2V_API_TOKEN (or I2V_INSECURE_NO_AUTH=true).",
        epilog=f"environment variables:\n{variables}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_arguments(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        messages = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        print(f"gateway: configuration error: {messages}", file=sys.stderr)
        return 2
    if settings.ui_enabled and importlib.util.find_spec("gradio") is None:
        # pyproject.toml's extra `gateway` leaves the web UI's Gradio out; `ui` brings it.
        print("gateway: configuration error: the web UI (I2V_UI_ENABLED, on by default) needs Gradio: "
              "pip install -e '.[ui]' (with -c requirements/gateway.txt), or set I2V_UI_ENABLED=false",
              file=sys.stderr)
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
