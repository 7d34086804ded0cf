"""Progress reports and the hub that streams them to watchers, without Triton (fake streams)."""

from __future__ import annotations

import logging

import pytest

from i2v_model import ProgressHub, ProgressReporter, ProgressSettings

END = "end"
ACK = (0, 0)  # what every watch hears first when its request has not stepped yet


class FakeStream:
    """Records what a watcher would receive; ``fail`` makes every send raise."""

    def __init__(self, fail: bool = False) -> None:
        self.received: list = []
        self.cancelled = False
        self.fail = fail

    def send(self, step: int, total: int) -> None:
        if self.fail:
            raise RuntimeError("client gone")
        self.received.append((step, total))

    def end(self) -> None:
        self.received.append(END)

    def is_cancelled(self) -> bool:
        return self.cancelled

    @property
    def ended(self) -> bool:
        return END in self.received


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub(clock: Clock) -> ProgressHub:
    return ProgressHub(max_watch_s=60, clock=clock)


class TestHub:
    def test_steps_arrive_in_order_then_the_end(self, hub: ProgressHub) -> None:
        watcher, other = FakeStream(), FakeStream()
        hub.watch("a", watcher)
        hub.watch("b", other)
        for step in (1, 2, 3):
            hub.report(["a", "b"], step, 3)
        assert watcher.received == [ACK, (1, 3), (2, 3), (3, 3)] and not watcher.ended
        hub.report(["a"], 0, 0, finished=True)
        assert watcher.received == [ACK, (1, 3), (2, 3), (3, 3), END]
        assert not other.ended

    def test_every_watcher_of_an_id_hears_each_step(self, hub: ProgressHub) -> None:
        first, second = FakeStream(), FakeStream()
        hub.watch("a", first)
        hub.watch("a", second)
        hub.report(["a"], 1, 2)
        hub.report(["a"], 0, 0, finished=True)
        assert first.received == second.received == [ACK, (1, 2), END]

    def test_a_watch_that_arrives_mid_run_starts_from_the_last_step(self, hub: ProgressHub) -> None:
        hub.report(["a"], 1, 4)
        hub.report(["a"], 2, 4)
        watcher = FakeStream()
        hub.watch("a", watcher)
        hub.report(["a"], 3, 4)
        assert watcher.received == [(2, 4), (3, 4)]

    def test_a_late_watch_of_a_finished_request_ends_at_once(self, hub: ProgressHub) -> None:
        hub.report(["a"], 5, 5)
        hub.report(["a", "never-stepped"], 0, 0, finished=True)
        late, failed_early = FakeStream(), FakeStream()
        hub.watch("a", late)
        hub.watch("never-stepped", failed_early)
        assert late.received == [(5, 5), END]
        assert failed_early.received == [ACK, END]

    def test_finished_requests_are_forgotten_after_a_while(self, hub: ProgressHub, clock: Clock) -> None:
        hub.report(["a"], 0, 0, finished=True)
        clock.now += ProgressHub.FINISHED_RETENTION_S + 1
        hub.sweep()
        watcher = FakeStream()
        hub.watch("a", watcher)
        assert watcher.received == [ACK]  # unknown again: waits for a run under that id

    def test_a_cancelled_watch_is_swept_and_ended(self, hub: ProgressHub) -> None:
        watcher, other = FakeStream(), FakeStream()
        hub.watch("a", watcher)
        hub.watch("a", other)
        watcher.cancelled = True
        hub.sweep()
        hub.report(["a"], 1, 2)
        assert watcher.received == [ACK, END]
        assert other.received == [ACK, (1, 2)]

    def test_a_watch_ends_after_its_lifetime(self, hub: ProgressHub, clock: Clock) -> None:
        watcher = FakeStream()
        hub.watch("a", watcher)
        clock.now += 59
        hub.sweep()
        assert not watcher.ended
        clock.now += 1
        hub.sweep()
        assert watcher.received == [ACK, END]
        hub.report(["a"], 1, 2)
        assert watcher.received == [ACK, END]

    def test_a_broken_stream_is_dropped_without_disturbing_the_others(self, hub: ProgressHub) -> None:
        broken, healthy = FakeStream(fail=True), FakeStream()
        hub.watch("a", broken)
        hub.watch("a", healthy)
        hub.report(["a"], 1, 2)
        hub.report(["a"], 2, 2)
        assert broken.received == [END]  # its acknowledgement already failed
        assert healthy.received == [ACK, (1, 2), (2, 2)]

    def test_known_requests_are_bounded(self, hub: ProgressHub, monkeypatch) -> None:
        monkeypatch.setattr(ProgressHub, "MAX_KNOWN", 3)
        for request_id in "abcd":
            hub.report([request_id], 1, 2)
        late = FakeStream()
        hub.watch("a", late)  # the oldest was forgotten: no catch-up step
        assert late.received == [ACK]

    def test_close_ends_every_watch(self, hub: ProgressHub) -> None:
        watcher = FakeStream()
        hub.watch("a", watcher)
        hub.start(interval_s=0.01)
        hub.close()
        assert watcher.received == [ACK, END]


class TestReporter:
    def test_one_send_per_step_for_all_ids_then_finished(self) -> None:
        sent: list = []
        reporter = ProgressReporter(lambda ids, step, total, finished: sent.append((list(ids), step, total, finished)))
        reporter.step(["a", "", "b"], 1, 2)  # a request without an id cannot be watched
        reporter.step(["a", "b"], 2, 2)
        reporter.step([""], 1, 2)
        reporter.finished(["a", "b", "bad-request"])
        assert sent == [(["a", "b"], 1, 2, False), (["a", "b"], 2, 2, False),
                        (["a", "b", "bad-request"], 0, 0, True)]

    def test_failing_sends_log_one_warning_and_never_raise(self, caplog) -> None:
        def send(ids, step, total, finished):
            raise RuntimeError("model i2vgen_xl_progress is not loaded")

        reporter = ProgressReporter(send)
        with caplog.at_level(logging.WARNING, logger="i2vgen_xl.progress"):
            for step in (1, 2, 3):
                reporter.step(["a"], step, 3)
            reporter.finished(["a"])
        assert len(caplog.records) == 1
        assert "not loaded" in caplog.records[0].getMessage()


@pytest.mark.parametrize("parameters, message", [
    ({"max_watch_s": "0"}, "max_watch_s must be positive"),
    ({"max_watch_s": "soon"}, "max_watch_s"),
    ({"retention": "5"}, "unknown model parameters: retention"),
])
def test_bad_progress_parameters_are_refused(parameters, message) -> None:
    with pytest.raises(ValueError, match=message):
        ProgressSettings.from_parameters(parameters)


def test_progress_parameters_are_typed() -> None:
    assert ProgressSettings.from_parameters({"max_watch_s": "90.5"}).max_watch_s == 90.5
