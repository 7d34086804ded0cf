"""Per-step progress of ``i2vgen_xl`` requests, carried through Triton itself.

Triton answers an ``i2vgen_xl`` request only when its video is done, and the gateway may run on
another host, so progress travels as Triton requests: the model reports each denoising step to the
decoupled model ``i2vgen_xl_progress`` (``ProgressReporter``, one report per step for every
request of the running pipeline call), and that model streams the steps to whoever watches a
request id (``ProgressHub``). Both sides are plain Python here; the Triton glue supplies the call
that sends a report and the response streams of the watchers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from i2v_model.settings import parse_parameters

logger = logging.getLogger("i2vgen_xl.progress")

SendReport = Callable[[Sequence[str], int, int, bool], None]
"""Sends one report: (request ids, step, total, finished)."""


class ProgressReporter:
    """The model's side: best effort, so a missing progress model never fails a generation."""

    def __init__(self, send: SendReport | None) -> None:
        self._send = send  # None: reports are off
        self._failing = False

    def step(self, request_ids: Sequence[str], step: int, total: int) -> None:
        self._report(request_ids, step, total, False)

    def finished(self, request_ids: Sequence[str]) -> None:
        """These requests ended, whatever the outcome (STEP and TOTAL are ignored then)."""
        self._report(request_ids, 0, 0, True)

    def _report(self, request_ids: Sequence[str], step: int, total: int, finished: bool) -> None:
        ids = [request_id for request_id in request_ids if request_id]  # no id: nobody can watch it
        if self._send is None or not ids:
            return
        try:
            self._send(ids, step, total, finished)
        except Exception as exc:  # noqa: BLE001 - progress must never fail a generation
            if not self._failing:  # one warning per outage, not one per step
                logger.warning("progress reports fail, generation goes on without them: %s", exc)
            self._failing = True
        else:
            self._failing = False


class WatchStream(Protocol):
    """One watcher's response stream (in Triton, a decoupled response sender)."""

    def send(self, step: int, total: int) -> None: ...

    def end(self) -> None: ...

    def is_cancelled(self) -> bool: ...


@dataclass(frozen=True)
class ProgressSettings:
    """Tunables of the ``i2vgen_xl_progress`` model."""

    max_watch_s: float = 3600.0  # a watch ends after this long even if its request never ends

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]) -> ProgressSettings:
        settings = cls(**parse_parameters(cls, parameters))
        if not settings.max_watch_s > 0:
            raise ValueError("max_watch_s must be positive")
        return settings


@dataclass
class _Watch:
    stream: WatchStream
    deadline: float


@dataclass
class _Known:
    step: int | None  # the last reported step; None before the first
    total: int = 0
    finished_at: float | None = None


class ProgressHub:
    """The progress model's side: forwards each reported step to the watchers of its request id.

    Finished requests are remembered for a while, so a watch that arrives late still hears the
    last step and ends at once instead of waiting out its lifetime. ``execute`` and the sweeper
    thread share the tables, hence the lock; streams are written under it too, which keeps
    each watcher's steps in order.
    """

    FINISHED_RETENTION_S = 300.0
    MAX_KNOWN = 10_000  # bounds memory if FINISHED reports are lost

    def __init__(self, max_watch_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_watch_s = max_watch_s
        self._clock = clock
        self._lock = threading.Lock()
        self._watches: dict[str, list[_Watch]] = {}
        self._known: OrderedDict[str, _Known] = OrderedDict()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def watch(self, request_id: str, stream: WatchStream) -> None:
        with self._lock:
            known = self._known.get(request_id)
            # Every watch hears at once what is known: (0, 0) before the first step, else the last
            # step. It is the acknowledgement a caller waits for before sending its request, so it
            # misses no step; a watch that arrives late hears the ones still to come after it.
            started = known is not None and known.step is not None
            if not self._send(stream, known.step if started else 0, known.total if started else 0):
                return
            if known is not None and known.finished_at is not None:
                self._end(stream)
                return
            watch = _Watch(stream, self._clock() + self.max_watch_s)
            self._watches.setdefault(request_id, []).append(watch)

    def report(self, request_ids: Sequence[str], step: int, total: int, finished: bool = False) -> None:
        with self._lock:
            for request_id in request_ids:
                if finished:
                    known = self._known.get(request_id) or _Known(step=None)
                    known.finished_at = self._clock()
                    self._remember(request_id, known)
                    for watch in self._watches.pop(request_id, []):
                        self._end(watch.stream)
                    continue
                self._remember(request_id, _Known(step, total))
                watches = self._watches.get(request_id)
                if watches:
                    watches[:] = [w for w in watches if self._send(w.stream, step, total)]

    def sweep(self) -> None:
        """End cancelled and expired watches; forget requests that finished long ago."""
        with self._lock:
            now = self._clock()
            for request_id, watches in list(self._watches.items()):
                live = []
                for watch in watches:
                    if now >= watch.deadline or self._is_cancelled(watch.stream):
                        self._end(watch.stream)
                    else:
                        live.append(watch)
                if live:
                    self._watches[request_id] = live
                else:
                    del self._watches[request_id]
            expired = [request_id for request_id, known in self._known.items()
                       if known.finished_at is not None and now - known.finished_at > self.FINISHED_RETENTION_S]
            for request_id in expired:
                del self._known[request_id]

    def start(self, interval_s: float = 0.5) -> None:
        """Sweep in a background thread until ``close``."""
        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.sweep()

        self._sweeper = threading.Thread(target=loop, name="progress-sweeper", daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        """Stop sweeping and end every open watch (the model is unloading)."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join()
        with self._lock:
            for watches in self._watches.values():
                for watch in watches:
                    self._end(watch.stream)
            self._watches.clear()

    def _remember(self, request_id: str, known: _Known) -> None:
        self._known[request_id] = known
        self._known.move_to_end(request_id)
        while len(self._known) > self.MAX_KNOWN:
            self._known.popitem(last=False)

    # A broken stream (its client gone) must not disturb the reporter or the other watchers.
    def _send(self, stream: WatchStream, step: int, total: int) -> bool:
        """Send one step; on failure end the stream and return False (the watch is dropped)."""
        try:
            stream.send(step, total)
            return True
        except Exception:  # noqa: BLE001
            logger.warning("dropping a progress watch whose stream failed", exc_info=True)
            self._end(stream)
            return False

    @staticmethod
    def _end(stream: WatchStream) -> None:
        try:
            stream.end()
        except Exception:  # noqa: BLE001
            logger.warning("cannot end a progress watch", exc_info=True)

    @staticmethod
    def _is_cancelled(stream: WatchStream) -> bool:
        try:
            return stream.is_cancelled()
        except Exception:  # noqa: BLE001
            logger.warning("cannot check a progress watch for cancellation", exc_info=True)
            return True
