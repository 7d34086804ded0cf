"""The application factory: ``create_app(settings)`` wires settings, services, the edge and routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.api import admin, docs, generate, health, jobs, usage
from gateway.api.files import OutputFiles
from gateway.config import Settings
from gateway.edge.body_size import BodySizeLimitMiddleware
from gateway.edge.client_ip import ClientAddressMiddleware, parse_networks
from gateway.edge.closing import ClosingMiddleware
from gateway.edge.metrics import MetricsMiddleware, start_metrics_port
from gateway.edge.request_log import RequestLogMiddleware
from gateway.edge.security_headers import SecurityHeadersMiddleware
from gateway.errors import install_error_handlers
from gateway.generation.outputs import URL_PREFIX, OutputStore
from gateway.openai.errors import OpenAIErrorShapeMiddleware, install_openai_errors
from gateway.openai.router import router as openai_router
from gateway.redis_persistence import log_persistence
from gateway.services import Services, edge_services

logger = logging.getLogger("gateway")


def create_app(settings: Settings) -> FastAPI:
    outputs = OutputStore(settings.outputs_dir)
    # One connection pool for the job store, the rate limits and the nonces; closed at shutdown.
    # A pooled connection that outlived a Redis restart fails on its next use, before the server
    # saw the command: one retry on a fresh connection answers the caller instead of a 503. Only
    # connection errors: a timed-out command may have run, and the nonce, rate-limit and insert
    # writes must not run twice.
    retry = Retry(ExponentialBackoff(cap=0.1, base=0.05), 1, supported_errors=(RedisConnectionError,))
    redis = aioredis.from_url(settings.redis_url, retry=retry) if settings.redis_url else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.open(settings, outputs, redis)
        app.state.services = services
        if settings.insecure_no_auth and not settings.api_keys and not settings.jwt_enabled:
            logger.warning("I2V_INSECURE_NO_AUTH is set: the API accepts requests without a token")
        if redis is not None:
            await log_persistence(redis)  # one line; a warning when a Redis restart would lose jobs
        services.runner.start()
        metrics_port = await start_metrics_port(app, settings)  # I2V_METRICS_PORT, if set
        try:
            yield
        finally:
            if metrics_port is not None:
                await metrics_port.close()
            await services.close()
            if redis is not None:
                await redis.aclose()

    # /docs and /redoc load Swagger UI and ReDoc from the gateway (docs.ASSETS_URL, public like
    # /openapi.json), not from a CDN, so they render on machines without internet.
    app = FastAPIOffline(
        static_url=docs.ASSETS_URL,
        redoc_url=None,  # docs.router's, which keeps ReDoc's badge from fetching its logo
        title="I2VGen-XL image-to-video API",
        version="1.0.0",
        description="Turn an image and a prompt into a short MP4 video. Served by I2VGen-XL on NVIDIA Triton.",
        lifespan=lifespan,
    )
    app.state.edge = edge_services(settings, redis)
    install_error_handlers(app)
    install_openai_errors(app)  # OpenAI's error shape under /v1 (gateway/openai), the native one elsewhere
    app.include_router(generate.router)
    app.include_router(jobs.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(usage.router)
    app.include_router(admin.router)
    app.include_router(openai_router)
    # Names resolve inside the folder only (no traversal); Range requests per RFC 9110 (files.py).
    app.mount(f"/{URL_PREFIX}", OutputFiles(directory=outputs.directory, check_dir=True), name=URL_PREFIX)
    if settings.ui_enabled:
        # The web UI at /ui: a client of the same job layer, behind its own session and CSRF guard.
        # Imported here: Gradio is 3.5 s of a gateway's start, which an API-only gateway skips.
        from gateway.ui.mount import mount_ui

        mount_ui(app, settings, outputs.directory)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(ClosingMiddleware)  # inside the log and the metrics: they see its 499
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Runs before the body limit and the routes, so a refused address costs nothing more;
    # the request log, added last and so outermost, still records it.
    app.add_middleware(ClientAddressMiddleware, allowlist=parse_networks(settings.ip_allowlist),
                       trusted_proxies=parse_networks(settings.trusted_proxies))
    app.add_middleware(OpenAIErrorShapeMiddleware)  # the refusals above, in OpenAI's shape under /v1
    # Counts every request, refused ones included; answers /metrics only with I2V_METRICS_TOKEN.
    app.add_middleware(MetricsMiddleware, token=settings.metrics_token)
    # CSP, frame and referrer rules on the UI and docs pages, refusals included.
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestLogMiddleware)
    return app
