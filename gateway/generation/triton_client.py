"""The gateway's one door to Triton: async gRPC calls, errors mapped to domain errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from gateway.errors import (
    ApiError,
    InferenceTimeoutError,
    InvalidFieldError,
    InvalidImageError,
    ModelFailedError,
    ModelUnavailableError,
)
from gateway.triton_inputs import VideoRequest, build_inputs

logger = logging.getLogger("gateway.triton")


@dataclass(frozen=True)
class GeneratedFrames:
    frames: np.ndarray  # uint8 [F, H, W, 3]
    seed: int


def map_triton_error(exc: InferenceServerException) -> ApiError:
    """Triton's gRPC status and message to the error the caller sees."""
    status = str(exc.status() or "")
    message = exc.message() or str(exc)
    if "DEADLINE_EXCEEDED" in status:
        return InferenceTimeoutError("the model did not finish in time; try fewer steps or frames, or retry later")
    if "INVALID_ARGUMENT" in status:
        if message.startswith("IMAGE"):
            return InvalidImageError(message)
        return InvalidFieldError(message)
    if "UNAVAILABLE" in status or "NOT_FOUND" in status:
        if "queue" in message.lower():
            return ModelUnavailableError("the model is at capacity; retry shortly")
        return ModelUnavailableError("the model server is not reachable or not ready; retry shortly")
    return ModelFailedError(f"the model failed: {message}")


class TritonClient:
    """Async client for the ``i2vgen_xl`` model; create inside a running event loop."""

    def __init__(self, url: str, model: str, timeout_s: float) -> None:
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self._client = grpcaio.InferenceServerClient(url)

    async def readiness(self) -> tuple[bool, str]:
        """(ready, reason) for ``/readyz``."""
        try:
            if not await self._client.is_server_live(client_timeout=2):
                return False, "Triton is not live"
            if not await self._client.is_model_ready(self.model, client_timeout=2):
                return False, f"model {self.model} is not ready"
        except InferenceServerException as exc:
            return False, f"Triton at {self.url} is not reachable: {exc.message()}"
        return True, ""

    async def generate(self, request: VideoRequest, timeout_s: float | None = None,
                       request_id: str = "") -> GeneratedFrames:
        """One video; raises an ``ApiError`` subclass on failure. Cancelling the awaiting
        task cancels the gRPC call, which Triton passes on to the model. ``request_id`` names
        the model's progress file (see ``ProgressFiles`` in the model)."""
        try:
            result = await self._client.infer(self.model, build_inputs(grpcaio, request), request_id=request_id,
                                              client_timeout=timeout_s or self.timeout_s)
        except InferenceServerException as exc:
            error = map_triton_error(exc)
            logger.warning("triton error %s: %s -> %d", exc.status(), exc.message(), error.status)
            raise error from None
        frames = result.as_numpy("FRAMES")
        seed = result.as_numpy("SEED")
        if frames is None or seed is None:
            raise ModelFailedError("the model returned no frames")
        return GeneratedFrames(frames=frames[0], seed=int(seed[0]))

    async def statistics(self) -> dict:
        return await self._client.get_inference_statistics(self.model, as_json=True)

    async def close(self) -> None:
        await self._client.close()
