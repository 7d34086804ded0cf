"""The application factory: ``create_app(settings)`` wires settings, clients and routes."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.exceptions import RedisError

from gateway.api import jobs as job_routes
from gateway.api.routes import router
from gateway.client_ip import ClientAddressMiddleware, parse_networks
from gateway.config import Settings
from gateway.errors import error_response, install_error_handlers
from gateway.jobs.cache import ResultCache
from gateway.jobs.redis_store import RedisJobStore
from gateway.jobs.runner import JobRunner
from gateway.jobs.service import JobService
from gateway.jobs.store import JobStore, SQLiteJobStore
from gateway.limits import BodySizeLimitMiddleware
from gateway.outputs import URL_PREFIX, OutputStore
from gateway.rate_limit import ConcurrencyLimiter, RedisTokenBucketLimiter, TokenBucketLimiter
from gateway.request_log import RequestLogMiddleware
from gateway.service import GenerationService
from gateway.signing import MemoryNonceStore, RedisNonceStore
from gateway.triton_client import TritonClient

logger = logging.getLogger("gateway")


def open_job_store(settings: Settings, redis: aioredis.Redis | None) -> JobStore:
    """Redis when configured (replicas share jobs), else the SQLite file."""
    if redis is not None:
        return RedisJobStore(redis)
    return SQLiteJobStore(settings.jobs_db)


def rate_limiter(settings: Settings,
                 redis: aioredis.Redis | None) -> TokenBucketLimiter | RedisTokenBucketLimiter | None:
    """Per-key budgets: shared in Redis when configured, else this process's own."""
    if settings.rate_limit_per_minute <= 0:
        return None
    if redis is not None:
        return RedisTokenBucketLimiter(redis, settings.rate_limit_per_minute, settings.rate_limit_burst)
    return TokenBucketLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)


def create_app(settings: Settings) -> FastAPI:
    outputs = OutputStore(settings.outputs_dir)
    # One connection pool for the job store, the rate limits and the nonces; closed at shutdown.
    redis = aioredis.from_url(settings.redis_url) if settings.redis_url else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The gRPC aio channel belongs to the running loop, so it is opened here.
        triton = TritonClient(settings.triton_grpc_url, settings.triton_model, settings.inference_timeout_s)
        store = open_job_store(settings, redis)
        cache = ResultCache(store, settings.cache_dir, outputs, settings.cache_max_bytes)
        generation = GenerationService(settings, triton, outputs, cache)
        jobs = JobService(settings, store, generation, wake=asyncio.Event())
        runner = JobRunner(settings, store, generation, jobs)
        app.state.generation, app.state.jobs = generation, jobs
        if settings.insecure_no_auth and not settings.api_keys and not settings.jwt_enabled:
            logger.warning("I2V_INSECURE_NO_AUTH is set: the API accepts requests without a token")
        runner.start()
        try:
            yield
        finally:
            await runner.stop()
            await store.close()
            if redis is not None:
                await redis.aclose()
            await triton.close()

    app = FastAPI(
        title="I2VGen-XL image-to-video API",
        version="1.0.0",
        description="Turn an image and a prompt into a short MP4 video. Served by I2VGen-XL on NVIDIA Triton.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.rate_limiter = rate_limiter(settings, redis)
    app.state.nonces = RedisNonceStore(redis) if redis is not None else MemoryNonceStore()
    app.state.generation_slots = (ConcurrencyLimiter(settings.max_concurrent_per_key)
                                  if settings.max_concurrent_per_key > 0 else None)
    install_error_handlers(app)

    @app.exception_handler(sqlite3.Error)
    @app.exception_handler(RedisError)
    async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
        # The job store (or Redis for limits and nonces) is down: a retry may succeed.
        logger.error("job store error: %s", exc)
        return error_response(503, "the job store is unavailable; retry shortly", {"Retry-After": "5"})

    app.include_router(router)
    app.include_router(job_routes.router)
    # StaticFiles resolves names inside the folder only (no traversal) and answers Range requests.
    app.mount(f"/{URL_PREFIX}", StaticFiles(directory=outputs.directory, check_dir=True), name=URL_PREFIX)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Runs before the body limit and the routes, so a refused address costs nothing more;
    # the request log, added last and so outermost, still records it.
    app.add_middleware(ClientAddressMiddleware, allowlist=parse_networks(settings.ip_allowlist),
                       trusted_proxies=parse_networks(settings.trusted_proxies))
    app.add_middleware(RequestLogMiddleware)
    return app
