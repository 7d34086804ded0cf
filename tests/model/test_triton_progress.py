"""Per-step progress through a real tritonserver: watch ``i2vgen_xl_progress``, run ``i2vgen_xl``."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.generation.triton_inputs import MODEL_NAME, PROGRESS_MODEL_NAME, VideoRequest, build_inputs
from i2v_tools.servers import TritonServer
from tests.support.media import gradient_png

pytestmark = pytest.mark.integration

END = "end"
# Bounds for events that come within a second on any machine; only a hang reaches them.
WAIT_S = 120


class ProgressStream:
    """One gRPC stream on the progress model; the responses of each call, by call id, in queues."""

    def __init__(self, url: str) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.responses: dict[str, queue.Queue] = {}
        self.errors: queue.Queue = queue.Queue()  # a stream error does not say which call it answers
        self.client.start_stream(callback=self._on_response)

    def _on_response(self, result, error) -> None:
        if error is not None:
            self.errors.put(error)
            return
        response = result.get_response()
        step = result.as_numpy("STEP")
        progress = None if step is None else (int(step[0]), int(result.as_numpy("TOTAL")[0]))
        if response.parameters["triton_final_response"].bool_param:
            # A watch ends in-band with (-1, -1); a report's answer is an empty final response.
            assert progress in (None, (-1, -1)), progress
            self.responses[response.id].put(END)
        else:
            self.responses[response.id].put(progress)

    def send(self, call_id: str, request_ids: list[str], step: int | None = None, total: int | None = None) -> None:
        """A WATCH without ``step``, else a REPORT; responses go to the queue of ``call_id``."""
        arrays = {"REQUEST_ID": (np.array([i.encode() for i in request_ids], dtype=object), "BYTES")}
        if step is not None:
            arrays["STEP"] = (np.array([step], dtype=np.int32), "INT32")
            arrays["TOTAL"] = (np.array([total], dtype=np.int32), "INT32")
        inputs = []
        for name, (array, datatype) in arrays.items():
            tensor = grpcclient.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        self.responses.setdefault(call_id, queue.Queue())
        self.client.async_stream_infer(PROGRESS_MODEL_NAME, inputs, request_id=call_id,
                                       enable_empty_final_response=True)

    def watch(self, request_id: str) -> None:
        """Watch ``request_id`` (the call id is the id too); return once the watch is registered:
        the hub acknowledges every watch at once with what it knows, (0, 0) before any step."""
        self.send(request_id, [request_id])
        assert self.next(request_id) == (0, 0)

    def next(self, call_id: str):
        return self.responses[call_id].get(timeout=WAIT_S)

    def until_end(self, call_id: str) -> list:
        received = []
        while not received or received[-1] != END:
            received.append(self.next(call_id))
        return received

    def close(self) -> None:
        self.client.stop_stream(cancel_requests=True)
        self.client.close()


@pytest.fixture
def stream(triton: TritonServer) -> Iterator[ProgressStream]:
    progress = ProgressStream(triton.grpc_url)
    yield progress
    progress.close()


@pytest.fixture(scope="module")
def grpc(triton: TritonServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(triton.grpc_url)


def video(**overrides) -> VideoRequest:
    fields = dict(image=gradient_png(), prompt="a cat", num_frames=8, num_inference_steps=4, height=64, width=64)
    fields.update(overrides)
    return VideoRequest(**fields)


def new_id() -> str:
    return f"job-{uuid.uuid4().hex}"


def test_a_watcher_hears_every_step_in_order_then_the_end(stream: ProgressStream, grpc) -> None:
    request_id = new_id()
    stream.watch(request_id)
    result = grpc.infer(MODEL_NAME, build_inputs(grpcclient, video(num_inference_steps=4)), request_id=request_id)
    assert result.as_numpy("FRAMES").shape == (1, 8, 64, 64, 3)
    assert stream.until_end(request_id) == [(1, 4), (2, 4), (3, 4), (4, 4), END]
    # A watch that comes after the end hears the last step and ends at once.
    late = f"late-{request_id}"
    stream.send(late, [request_id])
    assert stream.until_end(late) == [(4, 4), END]
    assert stream.errors.empty()


def test_concurrent_requests_are_each_reported(stream: ProgressStream, grpc) -> None:
    first, second = new_id(), new_id()
    stream.watch(first)
    stream.watch(second)
    errors: queue.Queue = queue.Queue()
    for request_id, steps in ((first, 3), (second, 5)):
        grpc.async_infer(MODEL_NAME, build_inputs(grpcclient, video(num_inference_steps=steps)),
                         callback=lambda result, error: errors.put(error), request_id=request_id)
    assert stream.until_end(first) == [(1, 3), (2, 3), (3, 3), END]
    assert stream.until_end(second) == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5), END]
    assert [errors.get(timeout=WAIT_S), errors.get(timeout=WAIT_S)] == [None, None]


def test_a_failed_request_ends_its_watch(stream: ProgressStream, grpc) -> None:
    request_id = new_id()
    stream.watch(request_id)
    with pytest.raises(InferenceServerException, match="NUM_FRAMES must be between"):
        grpc.infer(MODEL_NAME, build_inputs(grpcclient, video(num_frames=0)), request_id=request_id)
    assert stream.until_end(request_id) == [END]


def test_a_watch_names_exactly_one_request(stream: ProgressStream) -> None:
    stream.send("two", ["a", "b"])
    error = stream.errors.get(timeout=WAIT_S)
    assert "exactly one non-empty REQUEST_ID" in str(error)


def test_plain_infer_without_a_watcher_still_works(grpc) -> None:
    result = grpc.infer(MODEL_NAME, build_inputs(grpcclient, video(seed=3)), request_id=new_id())
    assert result.as_numpy("FRAMES").shape == (1, 8, 64, 64, 3)
    assert result.as_numpy("SEED").tolist() == [3]
