"""The gateway's one door to Triton: async gRPC calls, errors mapped to domain errors."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from gateway import metrics
from gateway.errors import (
    ApiError,
    InferenceTimeoutError,
    InvalidFieldError,
    InvalidImageError,
    ModelFailedError,
    ModelProcessLostError,
    ModelUnavailableError,
)
from gateway.generation.progress import Progress
from gateway.generation.triton_inputs import VideoRequest, build_inputs

logger = logging.getLogger("gateway.triton")
MODEL_CONFIG_TTL_S = 60.0
STREAM_END_S = 5.0  # how long a progress stream whose request ended may take to close by itself


def channel_args() -> list[tuple[str, int]]:
    """tritonclient's own channel options plus a short reconnect backoff.

    gRPC's default backoff (1 s, x1.6 an attempt, up to 120 s) left the gateway refusing work for
    10-20 s after a Triton that was away half a minute had come back, whenever something (a job,
    a readiness probe) kept trying meanwhile. Capped at 1 s, a Triton that returns is used within
    about a second; a connection attempt to a local or nearby Triton is cheap, so trying once a
    second during an outage costs nothing that matters.
    """
    keepalive = grpcaio.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", grpcaio.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", grpcaio.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 1000),
        # The time one connection attempt may take (default 20 s): an attempt that hangs on a
        # host that is down must not hold back the next one for long either.
        ("grpc.min_reconnect_backoff_ms", 2000),
    ]


@dataclass(frozen=True)
class GeneratedFrames:
    frames: np.ndarray  # uint8 [F, H, W, 3]
    seed: int


# What Triton's Python backend answers for each request its dead model process held or receives.
STUB_DIED = re.compile(r"Stub process '[^']*' is not healthy")


def map_triton_error(exc: InferenceServerException, request_id: str = "") -> ApiError:
    """Triton's gRPC status and message to the error the caller sees. Only the model's own
    validation messages (INVALID_ARGUMENT) pass through; anything else is said in one sentence
    with the request id, since Triton's text may hold a traceback and server paths (the log
    keeps it)."""
    status = str(exc.status() or "")
    message = exc.message() or str(exc)
    named = f" (request {request_id})" if request_id else ""
    if "DEADLINE_EXCEEDED" in status:
        return InferenceTimeoutError("the model did not finish in time; try fewer steps or frames, or retry later")
    if "INVALID_ARGUMENT" in status:
        if message.startswith("IMAGE"):
            return InvalidImageError(message)
        return InvalidFieldError(message)
    if STUB_DIED.search(message):
        return ModelProcessLostError(f"the model's process stopped while making this video{named}; it is being "
                                     "restarted, retry shortly")
    if "UNAVAILABLE" in status or "NOT_FOUND" in status:
        if "queue" in message.lower():
            return ModelUnavailableError("the model is at capacity; retry shortly")
        return ModelUnavailableError("the model server is not reachable or not ready; retry shortly")
    return ModelFailedError(f"the model failed to make this video{named}; the gateway's log has the details")


class TritonClient:
    """Async client for the ``i2vgen_xl`` model; create inside a running event loop."""

    def __init__(self, url: str, model: str, timeout_s: float, progress_model: str = "") -> None:
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.progress_model = progress_model
        self._client = grpcaio.InferenceServerClient(url, channel_args=channel_args())
        self._max_pixels: tuple[float, int | None] | None = None  # (monotonic time read, value)
        # Set when a call found the model's process dead: Triton 2.51 still calls such a model
        # ready, so readiness stays false until the model has been seen not ready (its reload, or
        # Triton's restart) and ready again, or a video is made.
        self._process_lost = ""
        self._seen_down_since_lost = False

    async def max_pixels(self) -> int | None:
        """The model's ``max_pixels`` parameter (its config.pbtxt), so that a size it would refuse is refused
        at submission; re-read each minute (a reloaded model may have another config). None while Triton
        cannot say."""
        now = time.monotonic()
        if self._max_pixels is not None and now - self._max_pixels[0] < MODEL_CONFIG_TTL_S:
            return self._max_pixels[1]
        try:
            config = await self._client.get_model_config(self.model, as_json=True, client_timeout=2)
            value: int | None = int(config["config"]["parameters"]["max_pixels"]["string_value"])
        except (InferenceServerException, KeyError, TypeError, ValueError):
            value = None  # unreachable, or a model without the parameter: the gateway's own limit holds
        self._max_pixels = (now, value)
        return value

    async def readiness(self) -> tuple[bool, str]:
        """(ready, reason) for ``/readyz`` and the model watch; kept in ``i2v_model_ready``."""
        ready, reason = await self._triton_readiness()
        if self._process_lost:
            if not ready:
                self._seen_down_since_lost = True
            elif self._seen_down_since_lost:
                logger.info("model %s is ready again after its process died", self.model)
                self._process_lost = ""
            else:
                ready, reason = False, self._process_lost
        metrics.MODEL_READY.set(1 if ready else 0)
        return ready, reason

    async def _triton_readiness(self) -> tuple[bool, str]:
        try:
            if not await self._client.is_server_live(client_timeout=2):
                return False, "Triton is not live"
            if not await self._client.is_model_ready(self.model, client_timeout=2):
                return False, f"model {self.model} is not ready on Triton (loading, or reloading after a crash)"
        except InferenceServerException as exc:
            return False, f"Triton at {self.url} is not reachable: {exc.message()}"
        return True, ""

    def _model_process_lost(self, request_id: str) -> None:
        metrics.MODEL_PROCESS_LOST.inc()
        if not self._process_lost:
            self._seen_down_since_lost = False
        self._process_lost = (f"the process of model {self.model} died (request {request_id} failed at "
                              f"{time.strftime('%H:%M:%S', time.gmtime())} UTC); waiting for it to be restarted")

    @metrics.in_progress(metrics.GENERATIONS_IN_FLIGHT)
    async def generate(self, request: VideoRequest, timeout_s: float | None = None,
                       request_id: str = "") -> GeneratedFrames:
        """One video; raises an ``ApiError`` subclass on failure. Cancelling the awaiting
        task cancels the gRPC call, which Triton passes on to the model. ``request_id`` is what
        ``watch_progress`` watches and what an error names (one is made up when none is given)."""
        request_id = request_id or uuid.uuid4().hex[:16]
        try:
            result = await self._client.infer(self.model, build_inputs(grpcaio, request), request_id=request_id,
                                              client_timeout=timeout_s or self.timeout_s)
        except InferenceServerException as exc:
            error = map_triton_error(exc, request_id)
            metrics.count_triton_error(exc.status())
            if isinstance(error, ModelProcessLostError):
                self._model_process_lost(request_id)
            logger.warning("triton error %s for request %s: %s -> %d", exc.status(), request_id, exc.message(),
                           error.status)
            raise error from None
        self._process_lost = ""
        frames = result.as_numpy("FRAMES")
        seed = result.as_numpy("SEED")
        if frames is None or seed is None:
            raise ModelFailedError("the model returned no frames")
        return GeneratedFrames(frames=frames[0], seed=int(seed[0]))

    async def watch_progress(self, request_id: str) -> AsyncGenerator[Progress, None]:
        """Every step the model reports for ``request_id``, in order, until the request ends.

        The first item is the progress model's acknowledgement (the state it knows, (0, 0) for a
        request that has not started), so a caller that waits for it before sending the request
        misses no step. The model ends the stream with a final (-1, -1). Ends at once when
        progress is off; raises ``ModelUnavailableError`` when the progress model cannot be
        reached (progress is best effort: callers go on without).
        """
        if not self.progress_model or not request_id:
            return
        watched = grpcaio.InferInput("REQUEST_ID", [1], "BYTES")
        watched.set_data_from_numpy(np.array([request_id.encode()], dtype=object))
        closed = asyncio.Event()

        async def requests() -> AsyncIterator[dict]:
            yield {"model_name": self.progress_model, "inputs": [watched]}
            await closed.wait()  # closing our half of the stream would end it early

        responses = self._client.stream_infer(requests())
        ended = False
        try:
            async for result, error in responses:
                if error is not None:
                    raise ModelUnavailableError(f"progress of {request_id} is not available: {error.message()}")
                step, total = result.as_numpy("STEP"), result.as_numpy("TOTAL")
                if step is None or total is None or int(step.reshape(-1)[0]) < 0:
                    ended = True  # the watched request ended: the stream is closed in good order below
                    return
                yield Progress(step=int(step.reshape(-1)[0]), total=int(total.reshape(-1)[0]))
        except (InferenceServerException, grpc.RpcError) as exc:
            raise ModelUnavailableError(f"progress of {request_id} is not available: {exc}") from None
        except asyncio.CancelledError:
            # gRPC also ends a call it gave up on with CancelledError: only our own cancellation
            # may propagate, or a broken stream would stop the worker that reads it.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            raise ModelUnavailableError(f"progress of {request_id} is not available: the stream was cancelled") \
                from None
        finally:
            closed.set()  # our half of the stream closes: the server then ends it
            in_good_order = False
            try:
                in_good_order = ended and await _ended_in_good_order(responses)
            finally:
                # Triton 2.51 keeps a few KB for every stream cancelled after its last answer
                # (4 KB a job in a 30-minute soak, docs/PERFORMANCE.md): only a stream that
                # does not end by itself (or a watch given up early) is cancelled.
                if not in_good_order:
                    responses.cancel()

    async def statistics(self) -> dict:
        return await self._client.get_inference_statistics(self.model, as_json=True)

    async def close(self) -> None:
        await self._client.close()


async def _ended_in_good_order(responses: AsyncIterator) -> bool:
    """Whether a progress stream whose request ended closes by itself (the server's end of the
    stream, after our half closed) within ``STREAM_END_S``, nothing more in it."""
    async def rest() -> bool:
        async for _ in responses:
            return False  # an answer after the last one: not a stream to wait for
        return True
    try:
        return await asyncio.wait_for(rest(), STREAM_END_S)
    except (asyncio.TimeoutError, InferenceServerException, grpc.RpcError):
        return False
