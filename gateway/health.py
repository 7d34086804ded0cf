"""Readiness as a state: starting, ready, degraded (with the reason) or draining."""

from __future__ import annotations

from gateway.generation.triton_client import TritonClient
from gateway.jobs.service import JobService
from gateway.schemas import HealthResponse, HealthStatus


class HealthService:
    def __init__(self, triton: TritonClient, jobs: JobService) -> None:
        self.triton = triton
        self.jobs = jobs
        self._been_ready = False
        self._draining = False

    def drain(self) -> None:
        """Shutdown has begun: report draining so balancers stop sending work here."""
        self._draining = True

    async def readiness(self) -> HealthResponse:
        if self._draining:
            return HealthResponse(status=HealthStatus.draining, message="the gateway is shutting down")
        ready, reason = await self.triton.readiness()
        if ready:
            reason = await self.jobs.store_readiness() or ""
        if not reason:
            self._been_ready = True
            return HealthResponse(status=HealthStatus.ready)
        # Not ready since start is "starting" (the model may still be loading); after that "degraded".
        return HealthResponse(status=HealthStatus.degraded if self._been_ready else HealthStatus.starting,
                              message=reason)
