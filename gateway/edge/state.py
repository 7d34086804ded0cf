"""What the HTTP edge needs at request time, in one typed object on ``app.state.edge``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import HTTPConnection

from gateway.config import Settings
from gateway.edge.fair_queue import FairQueue
from gateway.edge.rate_limit import KeyLimiters, Limiter


class NonceStore(Protocol):
    """Remembers request-signing nonces (signing.py) for their time to live."""

    async def first_use(self, nonce: str, ttl_s: float) -> bool: ...


@dataclass(frozen=True)
class EdgeServices:
    settings: Settings
    rate_limiter: Limiter | None  # requests that start work
    read_limiter: Limiter | None  # reads and cancels of jobs
    nonces: NonceStore
    generation_slots: FairQueue
    key_limiters: KeyLimiters | None = None  # stored keys' own rates (edge/keys.py)


def edge_services(connection: HTTPConnection) -> EdgeServices:
    return connection.app.state.edge
