"""Mount the UI on the gateway's app: the sign-in routes, the Gradio page at ``/ui``, its guard."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
from fastapi import FastAPI
from gradio.route_utils import CustomCORSMiddleware
from gradio.utils import get_upload_folder
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount

from gateway.config import Settings
from gateway.edge.auth import ANONYMOUS, auth_disabled
from gateway.ui.browser_side import CSS, page_head
from gateway.ui.example_images import EXAMPLES_DIR
from gateway.ui.guard import UiGuardMiddleware
from gateway.ui.login import UI_PATH, login_router
from gateway.ui.page import build_page
from gateway.ui.session import session_caller
from gateway.ui.shutdown import EndStreamsAtShutdown

IDLE_POLL_S = 0.05
# System fonts: Gradio's default theme would fetch its fonts from Google, and the page must load
# nothing from outside the gateway. Colours darker than the default's where its contrast is below
# WCAG AA (4.5:1): white on the orange Generate (2.8:1) and the red Cancel (3.8:1), the grey of
# slider bounds and "- or -" (1.9:1).
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]).set(
    button_primary_background_fill="*primary_700", button_primary_background_fill_hover="*primary_800",
    button_primary_text_color="white",
    button_cancel_background_fill="#b91c1c", button_cancel_background_fill_hover="#991b1b",
    button_cancel_text_color="white", body_text_color_subdued="*neutral_600")


def mount_ui(app: FastAPI, settings: Settings, outputs_dir: Path) -> None:
    open_to_all = auth_disabled(settings)

    async def caller(connection: HTTPConnection) -> str | None:
        """The key a request's session names (the guard asks, once per request)."""
        return ANONYMOUS if open_to_all else await session_caller(connection, settings)

    def signed_in_as(request: HTTPConnection) -> str | None:
        # The guard has checked the session of every request that reaches Gradio.
        return request.scope.get("state", {}).get("caller")

    app.include_router(login_router())  # before the mount, which would answer /ui/login itself
    page = build_page(app, sign_in_required=not open_to_all, uploads_kept_s=settings.retention_s)
    page.queue(default_concurrency_limit=None)  # the job layer queues and limits, not Gradio
    # Gradio's queue looks for work every 1 ms (and for progress every 10 ms) even when idle: 6%
    # of a core per idle gateway here. A UI event waiting up to 50 ms more is not noticed.
    page._queue.sleep_when_free = IDLE_POLL_S
    page._queue.progress_update_sleep_when_free = IDLE_POLL_S
    served = [Path(os.path.realpath(p)) for p in (outputs_dir, EXAMPLES_DIR, get_upload_folder())]
    gr.mount_gradio_app(app, page, path=UI_PATH, auth_dependency=signed_in_as,
                        allowed_paths=[str(p) for p in served[:2]],
                        footer_links=[], run_history=False, show_error=False, ssr_mode=False, mcp_server=False,
                        pwa=False, enable_monitoring=False, max_file_size=settings.max_body_bytes, theme=THEME,
                        css=CSS, head=page_head())
    gradio_app = drop_gradios_cors(app)
    shutdown = EndStreamsAtShutdown(page, gradio_app)
    app.add_middleware(UiGuardMiddleware, caller=caller, file_roots=lambda: served,
                       public_base_url=settings.public_base_url, serve_stream=shutdown.serve_stream)


def drop_gradios_cors(app: FastAPI) -> Starlette:
    """Take out the CORS middleware Gradio adds to its app, which answers any localhost origin
    (any port) with credentials: the UI follows I2V_CORS_ORIGINS, without credentials, like the
    API. The Gradio app."""
    for route in app.routes:
        if isinstance(route, Mount) and route.path == UI_PATH and isinstance(route.app, Starlette):
            route.app.user_middleware = [m for m in route.app.user_middleware if m.cls is not CustomCORSMiddleware]
            route.app.middleware_stack = None  # rebuilt without it at the first request
            return route.app
    raise RuntimeError("the web UI's Gradio app is not mounted")
