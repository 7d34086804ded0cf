"""The app's services in one typed object, opened in the lifespan and closed after it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from starlette.requests import HTTPConnection

from gateway.config import Settings
from gateway.edge.fair_queue import FairQueue
from gateway.edge.rate_limit import KeyLimiters, Limiter, RedisTokenBucketLimiter, TokenBucketLimiter
from gateway.edge.sessions import SessionStore, open_session_store
from gateway.edge.signing import MemoryNonceStore, RedisNonceStore
from gateway.edge.state import EdgeServices
from gateway.generation.cache import ResultCache
from gateway.generation.outputs import OutputStore
from gateway.generation.service import GenerationService
from gateway.generation.triton_client import TritonClient
from gateway.health import HealthService
from gateway.jobs.loops import Wake
from gateway.jobs.redis_store import RedisJobStore
from gateway.jobs.runner import JobRunner
from gateway.jobs.service import JobService
from gateway.jobs.sqlite_store import SQLiteJobStore
from gateway.jobs.store import JobStore
from gateway.jobs.views import JobViews
from gateway.tenants.redis_store import RedisKeyStore
from gateway.tenants.service import KeyService
from gateway.tenants.sqlite_store import SQLiteKeyStore
from gateway.tenants.store import KeyStore

logger = logging.getLogger("gateway")


def edge_services(settings: Settings, redis: aioredis.Redis | None) -> EdgeServices:
    """Per-key budgets and nonces: shared in Redis when configured, else this process's own."""
    def bucket(per_minute: float, burst: int) -> Limiter | None:
        if per_minute <= 0:
            return None
        return RedisTokenBucketLimiter(redis, per_minute, burst) if redis is not None \
            else TokenBucketLimiter(per_minute, burst)
    return EdgeServices(
        settings=settings, rate_limiter=bucket(settings.rate_limit_per_minute, settings.rate_limit_burst),
        read_limiter=bucket(settings.read_rate_limit_per_minute, settings.read_rate_limit_burst),
        nonces=RedisNonceStore(redis) if redis is not None else MemoryNonceStore(),
        generation_slots=FairQueue(settings.max_concurrent_per_key, settings.max_concurrent_generations,
                                   settings.max_waiting_per_key, settings.max_generation_wait_s),
        key_limiters=KeyLimiters(redis))


def open_job_store(settings: Settings, redis: aioredis.Redis | None) -> JobStore:
    """Redis when configured (replicas share jobs), else the SQLite file."""
    return RedisJobStore(redis) if redis is not None else SQLiteJobStore(settings.jobs_db)


def open_key_store(store: JobStore) -> KeyStore:
    """Keys, audit and usage beside the jobs: on the job store's Redis client or SQLite connection."""
    if isinstance(store, RedisJobStore):
        return RedisKeyStore(store.client)
    if isinstance(store, SQLiteJobStore):
        return SQLiteKeyStore(store)
    raise TypeError(f"no key store for {type(store).__name__}")


@dataclass
class Services:
    settings: Settings
    outputs: OutputStore
    triton: TritonClient
    store: JobStore
    generation: GenerationService
    jobs: JobService
    views: JobViews
    runner: JobRunner
    health: HealthService
    tenants: KeyService
    sessions: SessionStore  # the web UI's sign-ins, beside the jobs

    @classmethod
    def open(cls, settings: Settings, outputs: OutputStore, redis: aioredis.Redis | None) -> Services:
        """Inside the running event loop: the gRPC aio channel belongs to it."""
        triton = TritonClient(settings.triton_grpc_url, settings.triton_model, settings.inference_timeout_s,
                              settings.triton_progress_model)
        store = open_job_store(settings, redis)
        cache = ResultCache(store, settings.cache_dir, outputs, settings.cache_max_bytes)
        generation = GenerationService(settings, triton, outputs, cache)
        wake = Wake()
        jobs = JobService(settings, store, generation, wake)
        views = JobViews(outputs)
        runner = JobRunner(settings, store, generation, views, wake)
        tenants = KeyService(settings, open_key_store(store), store)
        store.ended = tenants  # each ended job's work goes to its key's usage
        return cls(settings=settings, outputs=outputs, triton=triton, store=store, generation=generation,
                   jobs=jobs, views=views, runner=runner, health=HealthService(triton, jobs), tenants=tenants,
                   sessions=open_session_store(store))

    async def close(self) -> None:
        self.health.drain()
        await self.runner.stop()
        await self.store.close()
        await self.tenants.close()
        await self.triton.close()


def services(connection: HTTPConnection) -> Services:
    return connection.app.state.services
