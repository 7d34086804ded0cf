"""The progress stream a job watches, against the real tritonserver: when the watched request ends
the stream is closed in good order (our half closes, the server ends the call with OK), and it is
cancelled only when the watch is given up early. Triton 2.51 keeps a few KB for every stream
cancelled after its last answer: cancelling each job's stream grew tritonserver by about 4 KB a
job in the 30-minute soak (docs/PERFORMANCE.md, "Soak")."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gateway.generation.triton_client import TritonClient
from gateway.generation.triton_inputs import MODEL_NAME, PROGRESS_MODEL_NAME, VideoRequest
from i2v_tools.servers import TritonServer
from tests.support.media import gradient_png

pytestmark = pytest.mark.integration


def recording_client(triton: TritonServer) -> tuple[TritonClient, list]:
    """A client whose progress streams (tritonclient's response iterators) are kept, to read how
    each call ended."""
    client = TritonClient(triton.grpc_url, MODEL_NAME, 120, progress_model=PROGRESS_MODEL_NAME)
    streams: list = []
    open_stream = client._client.stream_infer

    def recorded(*args, **kwargs):
        streams.append(open_stream(*args, **kwargs))
        return streams[-1]

    client._client.stream_infer = recorded  # type: ignore[method-assign]
    return client, streams


async def how_it_ended(stream) -> grpc.StatusCode:
    return await asyncio.wait_for(stream._grpc_call.code(), 30)


def test_a_watched_request_ends_its_stream_in_good_order_and_a_given_up_watch_is_cancelled(
        triton: TritonServer) -> None:
    async def scenario() -> None:
        client, streams = recording_client(triton)
        try:
            watch = client.watch_progress("stream-order-1")
            acknowledged = await anext(watch)  # before the request is sent: no step is missed
            assert (acknowledged.step, acknowledged.total) == (0, 0)
            video = asyncio.ensure_future(client.generate(
                VideoRequest(image=gradient_png(), prompt="a cat", num_frames=8, num_inference_steps=2,
                             height=64, width=64, seed=1), request_id="stream-order-1"))
            steps = [(step.step, step.total) async for step in watch]  # to the stream's own end
            await video
            assert steps[-1] == (2, 2), steps
            assert await how_it_ended(streams[0]) == grpc.StatusCode.OK

            given_up = client.watch_progress("stream-order-never-sent")
            await anext(given_up)
            await asyncio.wait_for(given_up.aclose(), 10)
            assert await how_it_ended(streams[1]) == grpc.StatusCode.CANCELLED
        finally:
            await client.close()

    asyncio.run(scenario())
