"""The model defends itself against what a direct Triton caller can send (issue 28), and answers
each request when its own video is done (issue 27): on the session's real tritonserver."""

from __future__ import annotations

import statistics
import struct
import threading
import time
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from gateway.generation.triton_inputs import MODEL_NAME, VideoRequest, build_inputs
from i2v_tools.sample_inputs import png_declaring
from i2v_tools.servers import TritonServer
from i2v_tools.triton_stats import model_counts, settled_counts
from tests.support.media import gradient_png, image_bytes

pytestmark = pytest.mark.integration
# 14 bytes: a QOI header for 1x1 and no data, on which Pillow's QOI decoder raises IndexError.
TRUNCATED_QOI = b"qoif" + struct.pack(">IIBB", 1, 1, 3, 0)
# A hostile input may cost the model process this much more memory, at its peak, than a normal
# request of the same output size.
MEMORY_BOUND = 1.2


def video(**overrides) -> VideoRequest:
    fields = dict(image=gradient_png(), prompt="a cat", num_frames=8, num_inference_steps=2, height=64, width=64)
    fields.update(overrides)
    return VideoRequest(**fields)


@pytest.fixture(scope="module")
def http(triton: TritonServer) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(triton.http_url, concurrency=8, network_timeout=300)


def infer(client: httpclient.InferenceServerClient, request: VideoRequest):
    """The result, or the error Triton answered."""
    try:
        return client.infer(MODEL_NAME, build_inputs(httpclient, request))
    except InferenceServerException as exc:
        return exc


def at_once(url: str, requests: list[VideoRequest]) -> list[tuple[float, object]]:
    """Send every request at the same moment, each on its own connection; (seconds, outcome) each."""
    start = threading.Barrier(len(requests))
    outcomes: list = [None] * len(requests)

    def send(index: int) -> None:
        client = httpclient.InferenceServerClient(url, network_timeout=300)
        inputs = build_inputs(httpclient, requests[index])  # built before the start: only the call is timed
        start.wait()
        started = time.monotonic()
        try:
            outcome = client.infer(MODEL_NAME, inputs)
        except InferenceServerException as exc:
            outcome = exc
        outcomes[index] = (time.monotonic() - started, outcome)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return outcomes


def assert_plain(error: InferenceServerException) -> None:
    """An answer a caller can read: no traceback, no server path."""
    message = error.message()
    assert "Traceback" not in message and 'File "' not in message and "/" not in message, message


def test_a_poisoned_request_fails_alone_and_no_answer_holds_a_traceback(http, triton: TritonServer) -> None:
    infer(http, video())  # warm: a first call of a fresh server takes seconds, and the rest queue apart
    requests = [video(seed=1), video(image=TRUNCATED_QOI), video(seed=2), video(image=image_bytes(fmt="ICO"))]
    # The four may reach Triton more than the batcher's 5 ms apart and not share an execution
    # (measured on this 2-core machine: 2 to 4 executions a try, even idle): then they are sent
    # again (bounded); every try must show the outcomes, one try the batch.
    for _ in range(12):
        before_requests, before_executions = model_counts(http)
        outcomes = [outcome for _, outcome in at_once(triton.http_url, requests)]
        for good in (outcomes[0], outcomes[2]):
            assert not isinstance(good, Exception), good
            assert good.as_numpy("FRAMES").shape == (1, 8, 64, 64, 3)
        for bad in (outcomes[1], outcomes[3]):
            assert isinstance(bad, InferenceServerException) and bad.status() == "400", bad
            assert "IMAGE is not a decodable image of an accepted format (PNG, JPEG, WebP, BMP, GIF or TIFF)" \
                in bad.message()
            assert_plain(bad)
        # Triton counts the good ones as inferences; four requests in at most two executions:
        # the bad ones shared a batch with good ones (usually all four are one).
        _, executions = settled_counts(http, before_requests + 2)
        if executions - before_executions <= 2:
            return
    pytest.fail("the four requests were never batched together")


def test_the_work_limit_refuses_hours_of_work_at_once(http) -> None:
    # Each input within its range (1280x1280, 64 frames, 150 steps), together hours of the instance.
    started = time.monotonic()
    outcome = infer(http, video(height=1280, width=1280, num_frames=64, num_inference_steps=150))
    assert isinstance(outcome, InferenceServerException) and outcome.status() == "400"
    assert "exceeds the model's work limit" in outcome.message()
    assert time.monotonic() - started < 30


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_hostile_inputs_cost_no_more_memory_than_a_normal_request(http, triton: TritonServer) -> None:
    pid = triton.stub_pid()

    def peak_of(request: VideoRequest) -> tuple[float, object]:
        # Writing 5 to clear_refs resets the peak (VmHWM) to what the process holds now.
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        outcome = infer(http, request)
        return _peak_rss_mib(pid), outcome

    size = dict(height=256, width=256, num_frames=8, num_inference_steps=1)
    peak_of(video(**size, image=gradient_png((320, 192))))  # the first call at a size warms caches
    normal, outcome = peak_of(video(**size, image=gradient_png((320, 192))))
    assert not isinstance(outcome, Exception), outcome
    hostile = {
        # Scaled whole to cover 256x256 before cropping, 1x8000 took the process to 2.55 GB.
        "1x8000 PNG": (video(**size, image=image_bytes(size=(1, 8000))), None),
        "8000x1 PNG": (video(**size, image=image_bytes(size=(8000, 1))), None),
        "13000x13000 PNG header": (video(**size, image=png_declaring(13000, 13000)), "pixels; the limit is"),
        "IMAGE over the byte limit": (video(**size, image=b"\x89PNG" + bytes(20 * 1024 * 1024)), "bytes; the limit"),
        "8 MB prompt": (video(**size, prompt="x" * 8_000_000), "PROMPT is 8000000 characters"),
        "truncated QOI": (video(**size, image=TRUNCATED_QOI), "accepted format"),
    }
    peaks = {}
    for name, (request, refusal) in hostile.items():
        peak, outcome = peak_of(request)
        peaks[name] = round(peak)
        if refusal is None:
            assert not isinstance(outcome, Exception), f"{name}: {outcome}"
            assert outcome.as_numpy("FRAMES").shape == (1, 8, 256, 256, 3)
        else:
            assert isinstance(outcome, InferenceServerException) and refusal in outcome.message(), f"{name}: {outcome}"
    print(f"stub peak RSS, MiB: normal {normal:.0f}, hostile {peaks}")
    for name, peak in peaks.items():
        assert peak <= MEMORY_BOUND * normal, f"{name}: peak {peak} MiB against {normal:.0f} MiB for a normal request"


def test_each_request_is_answered_when_its_own_video_is_done(triton: TritonServer) -> None:
    # One pipeline call takes about a second here; four sent together share one execution (or
    # two), and the first of them must not wait for the others' videos (it waited 3.9x before).
    # The time alone is the median of calls just before and just after, so that a change in the
    # machine's load (its cores are shared) moves both sides of the comparison.
    request = video(num_inference_steps=20, seed=5)
    at_once(triton.http_url, [request])  # warm
    alone_runs = [at_once(triton.http_url, [request])[0][0] for _ in range(2)]
    outcomes = at_once(triton.http_url, [video(num_inference_steps=20, seed=s) for s in range(4)])
    alone_runs += [at_once(triton.http_url, [request])[0][0] for _ in range(2)]
    alone = statistics.median(alone_runs)
    assert all(not isinstance(outcome, Exception) for _, outcome in outcomes), outcomes
    first = min(seconds for seconds, _ in outcomes)
    print(f"alone {alone:.2f} s; four at once answered at {sorted(round(s, 2) for s, _ in outcomes)} s")
    assert first <= 1.5 * alone, f"the first of four answered after {first:.2f} s, alone {alone:.2f} s"
