"""Mount the UI on the gateway's app: the sign-in routes, the Gradio page at ``/ui``, its guard."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
from fastapi import FastAPI
from gradio.utils import get_upload_folder
from starlette.requests import HTTPConnection

from gateway.config import Settings
from gateway.edge.auth import ANONYMOUS, auth_disabled
from gateway.ui.example_images import EXAMPLES_DIR
from gateway.ui.guard import UiGuardMiddleware
from gateway.ui.login import UI_PATH, login_router
from gateway.ui.page import CSS, build_page
from gateway.ui.session import COOKIE_NAME, SessionSigner

# System fonts: Gradio's default theme would fetch its fonts from Google, and the page must load
# nothing from outside the gateway.
IDLE_POLL_S = 0.05
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def mount_ui(app: FastAPI, settings: Settings, outputs_dir: Path) -> None:
    signer = SessionSigner.from_settings(settings)
    open_to_all = auth_disabled(settings)

    def caller(connection: HTTPConnection) -> str | None:
        """The key a request's session names; a key removed from the configuration ends its sessions."""
        if open_to_all:
            return ANONYMOUS
        name = signer.verify(connection.cookies.get(COOKIE_NAME))
        return name if name is not None and name in settings.api_keys else None

    app.include_router(login_router(signer))  # before the mount, which would answer /ui/login itself
    page = build_page(app, sign_in_required=not open_to_all, uploads_kept_s=settings.retention_s)
    page.queue(default_concurrency_limit=None)  # the job layer queues and limits, not Gradio
    # Gradio's queue looks for work every 1 ms (and for progress every 10 ms) even when idle: 6%
    # of a core per idle gateway here. A UI event waiting up to 50 ms more is not noticed.
    page._queue.sleep_when_free = IDLE_POLL_S
    page._queue.progress_update_sleep_when_free = IDLE_POLL_S
    served = [Path(os.path.realpath(p)) for p in (outputs_dir, EXAMPLES_DIR, get_upload_folder())]
    gr.mount_gradio_app(app, page, path=UI_PATH, auth_dependency=caller, allowed_paths=[str(p) for p in served[:2]],
                        footer_links=[], run_history=False, show_error=False, ssr_mode=False, mcp_server=False,
                        pwa=False, enable_monitoring=False, max_file_size=settings.max_body_bytes, theme=THEME,
                        css=CSS)
    app.add_middleware(UiGuardMiddleware, caller=caller, file_roots=lambda: served,
                       public_base_url=settings.public_base_url)
