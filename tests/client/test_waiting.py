"""How one ``wait`` keeps its place across reconnections (the pure part; the restart itself is
tests/client/test_faults.py's, against a real gateway)."""

from __future__ import annotations

import time

import pytest

from i2v_client import APIConnectionError, NotFound, Progress, ServiceUnavailable, WaitTimeoutError
from i2v_client.transport import SseEvent
from i2v_client.waiting import RECONNECT_MAX_S, Follow, NoEventStream, StreamUnavailable


def running(number: int, step: int) -> SseEvent:
    return SseEvent(str(number), "running", {"step": step, "total": 4})


def test_a_resumed_stream_sends_last_event_id_and_no_event_reaches_the_callback_twice() -> None:
    seen: list[Progress] = []
    follow = Follow("job", None, seen.append)
    assert "Last-Event-ID" not in follow.stream_headers()
    follow.connected()
    for number, step in ((2, 1), (3, 2)):
        follow.event(running(number, step))
    assert follow.stream_headers()["Last-Event-ID"] == "3"
    # A resumed stream that repeats (a proxy that ignores Last-Event-ID) changes nothing.
    for number, step in ((2, 1), (3, 2), (4, 3)):
        follow.event(running(number, step))
    assert [p.step for p in seen] == [1, 2, 3]


def test_polling_gives_progress_only_where_there_is_no_stream() -> None:
    from i2v_client.models import JobResponse

    job = JobResponse.model_validate({"job_id": "job", "status": "running", "message": "", "status_url": "/x",
                                      "created_at": "2026-12-03T00:00:00Z", "progress": {"step": 2, "total": 4}})
    seen: list[Progress] = []
    without_streams = Follow("job", None, seen.append)
    without_streams.polled(job)
    assert [p.step for p in seen] == [2]
    seen.clear()
    streamed = Follow("job", None, seen.append)
    streamed.connected()
    assert streamed.polled(job) is None and seen == []  # the resumed stream will replay it


def test_transient_failures_are_ridden_out_with_capped_backoff_others_raise() -> None:
    follow = Follow("job", None, None)
    for error in (APIConnectionError("refused"), ServiceUnavailable(503, "restarting"), StreamUnavailable("cut")):
        follow.failed(error)
    delays = []
    for _ in range(12):
        follow.failed(APIConnectionError("refused"))
        delays.append(follow.backoff(1.0))
    assert all(0 < delay <= RECONNECT_MAX_S for delay in delays) and max(delays) > 2
    with pytest.raises(NotFound):
        follow.failed(NotFound(404, "no such job"))
    fresh = Follow("job", None, None)
    fresh.failed(NoEventStream("text/html"))
    assert fresh.polling_only  # no event stream here (a proxy): poll at the interval
    follow.connected()
    follow.failed(NoEventStream("text/html"))
    assert not follow.polling_only  # a stream answered before: a proxy's page is a passing fault


def test_the_callers_timeout_ends_the_wait() -> None:
    follow = Follow("job", 0.01, None)
    time.sleep(0.02)
    with pytest.raises(WaitTimeoutError) as error:
        follow.failed(APIConnectionError("refused"))
    assert isinstance(error.value, TimeoutError) and error.value.job_id == "job"
