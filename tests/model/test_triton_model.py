"""The i2vgen_xl model on a real tritonserver, over HTTP and gRPC."""

from __future__ import annotations

import re
import threading
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from gateway.generation.triton_inputs import MODEL_NAME, VideoRequest, build_inputs
from i2v_tools.servers import TritonServer
from i2v_tools.triton_stats import model_counts, settled_counts
from tests.support.media import gradient_png, image_bytes

pytestmark = pytest.mark.integration


def video(**overrides) -> VideoRequest:
    fields = dict(image=gradient_png(), prompt="a cat", num_frames=8, num_inference_steps=2, height=64, width=64)
    fields.update(overrides)
    return VideoRequest(**fields)


@pytest.fixture(scope="module")
def http(triton: TritonServer) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(triton.http_url, concurrency=8, network_timeout=300)


@pytest.fixture(scope="module")
def grpc(triton: TritonServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(triton.grpc_url)


def infer_http(client: httpclient.InferenceServerClient, request: VideoRequest):
    return client.infer(MODEL_NAME, build_inputs(httpclient, request))


def run_concurrently(client: httpclient.InferenceServerClient, requests: list[VideoRequest]):
    """Send all requests at once (the client's own async API); return each result or its error."""
    pending = [client.async_infer(MODEL_NAME, build_inputs(httpclient, request)) for request in requests]
    results = []
    for handle in pending:
        try:
            results.append(handle.get_result())
        except InferenceServerException as exc:
            results.append(exc)
    return results


@pytest.mark.parametrize("height, width, frames", [(64, 64, 8), (72, 128, 12)])
def test_http_returns_frames_of_the_requested_shape(http, height, width, frames) -> None:
    result = infer_http(http, video(height=height, width=width, num_frames=frames, seed=3))
    assert result.as_numpy("FRAMES").shape == (1, frames, height, width, 3)
    assert result.as_numpy("FRAMES").dtype == np.uint8
    assert result.as_numpy("SEED").tolist() == [3]


@pytest.mark.parametrize("height, width, frames", [(64, 64, 8), (128, 64, 16)])
def test_grpc_returns_frames_of_the_requested_shape(grpc, height, width, frames) -> None:
    result = grpc.infer(MODEL_NAME, build_inputs(grpcclient, video(height=height, width=width, num_frames=frames)))
    assert result.as_numpy("FRAMES").shape == (1, frames, height, width, 3)


def test_http_and_grpc_agree_for_a_seed(http, grpc) -> None:
    request = video(seed=11)
    over_http = infer_http(http, request).as_numpy("FRAMES")
    over_grpc = grpc.infer(MODEL_NAME, build_inputs(grpcclient, request)).as_numpy("FRAMES")
    assert np.array_equal(over_http, over_grpc)


def test_unseeded_request_reports_the_seed_it_used(http) -> None:
    first = infer_http(http, video())
    seed = int(first.as_numpy("SEED")[0])
    again = infer_http(http, video(seed=seed))
    assert np.array_equal(first.as_numpy("FRAMES"), again.as_numpy("FRAMES"))


def test_concurrent_same_shape_requests_share_executions(http) -> None:
    before_requests, before_executions = model_counts(http)
    results = run_concurrently(http, [video(seed=s) for s in range(6)])
    assert all(not isinstance(r, Exception) for r in results), results
    requests, executions = settled_counts(http, before_requests + 6)
    # At least ours: the server is the session's, and a test gateway's job worker may send one of
    # its own meanwhile (a CI run counted 7). Fewer executions than requests is the batching.
    assert requests - before_requests >= 6
    assert executions - before_executions < requests - before_requests, \
        "dynamic batching should group concurrent requests"


def test_mixed_shapes_all_succeed(http) -> None:
    shapes = [(64, 64, 8), (64, 128, 8), (64, 64, 12), (128, 64, 8), (64, 64, 8), (64, 128, 8)]
    results = run_concurrently(http, [video(height=h, width=w, num_frames=f) for h, w, f in shapes])
    for (height, width, frames), result in zip(shapes, results, strict=True):
        assert not isinstance(result, Exception), result
        assert result.as_numpy("FRAMES").shape == (1, frames, height, width, 3)


def test_seeded_frames_are_bit_identical_alone_and_in_a_batch(http) -> None:
    target = video(seed=1234, prompt="waves on a beach")
    alone = infer_http(http, target).as_numpy("FRAMES")
    before_requests, before_executions = model_counts(http)
    neighbours = [video(seed=s, image=image_bytes(c), prompt=p)
                  for s, c, p in ((5, "blue", "a dog"), (6, "green", "rain"), (7, "white", "snow"))]
    results = run_concurrently(http, [neighbours[0], target, neighbours[1], neighbours[2]])
    requests, executions = settled_counts(http, before_requests + 4)
    assert executions - before_executions < requests - before_requests, "the requests were not batched"
    assert np.array_equal(alone, results[1].as_numpy("FRAMES"))
    assert not np.array_equal(results[1].as_numpy("FRAMES"), results[0].as_numpy("FRAMES"))


def test_different_seeds_give_different_frames(http) -> None:
    first = infer_http(http, video(seed=1)).as_numpy("FRAMES")
    second = infer_http(http, video(seed=2)).as_numpy("FRAMES")
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("bad, message", [
    (dict(image=b"not an image"), "IMAGE is not a decodable image"),
    (dict(num_frames=0), "NUM_FRAMES must be between 1 and"),
    (dict(height=60), "HEIGHT must be a multiple of 8"),
])
def test_one_bad_request_fails_alone_in_a_batch(http, bad, message) -> None:
    requests = [video(seed=1), video(**bad), video(seed=2), video(seed=3)]
    results = run_concurrently(http, requests)
    assert isinstance(results[1], InferenceServerException)
    assert message in results[1].message()
    for result in (results[0], results[2], results[3]):
        assert not isinstance(result, Exception), result
        assert result.as_numpy("FRAMES").shape == (1, 8, 64, 64, 3)


def test_grpc_cancellation_stops_the_model_between_steps(grpc, http, triton: TritonServer) -> None:
    import tritonclient.grpc as grpc_module

    done = threading.Event()
    outcome: list = []
    # About a minute of work if it ran to the end (64x64, 8 frames: ~0.15 s a step).
    call = grpc.async_infer(MODEL_NAME, build_inputs(grpc_module, video(num_inference_steps=150, seed=77)),
                            callback=lambda result, error: (outcome.append(error), done.set()))
    time.sleep(2.0)
    call.cancel()
    assert done.wait(10)
    assert outcome and outcome[0] is not None and "CANCELLED" in str(outcome[0]).upper()
    started = time.monotonic()
    infer_http(http, video(seed=5))
    assert time.monotonic() - started < 15, "the cancelled request kept the instance busy"
    deadline = time.monotonic() + 10
    pattern = re.compile(r"cancelled after (\d+) of 150 denoising steps")
    while time.monotonic() < deadline and not pattern.search(triton.server_log.read_text()):
        time.sleep(0.2)
    match = pattern.search(triton.server_log.read_text())
    assert match and int(match.group(1)) < 150


def test_metrics_count_successful_requests(http, triton: TritonServer) -> None:
    infer_http(http, video(seed=9))
    text = urllib.request.urlopen(triton.metrics_url, timeout=10).read().decode()
    match = re.search(r'^nv_inference_request_success\{model="i2vgen_xl",version="1"\} (\d+)', text, re.M)
    assert match and int(match.group(1)) >= 1
