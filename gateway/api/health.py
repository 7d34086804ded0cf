"""Probes: ``/healthz`` (the process lives) and ``/readyz`` (it can serve, and if not, why)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway.api.deps import App
from gateway.schemas import HealthResponse, HealthStatus

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The gateway process is alive."""
    return HealthResponse(status=HealthStatus.ok)


@router.get("/readyz", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def readyz(app: App) -> JSONResponse:
    """ready (200) when Triton's model and the job store answer; starting, degraded or draining (503)."""
    health = await app.health.readiness()
    return JSONResponse(health.model_dump(mode="json"),
                        status_code=200 if health.status is HealthStatus.ready else 503)
