"""Every gateway metric in one place: its name, help text, labels and buckets.

Top-level like ``logs.py``, so every layer may record into it; nothing here imports the layers.
The metrics live in their own registry (not the process-wide default), so what /metrics shows is
exactly this list plus the process's CPU and memory. docs/DEPLOYMENT.md has the reference table.

Label values are bounded on purpose: routes are templates (``/api/v1/jobs/{job_id}``), never raw
paths, and callers are key names, with every JWT subject folded into one ``jwt`` value (subjects
are unbounded; one series each would grow Prometheus without limit) and key names past the first
50 a process sees (keys made at run time, issue 24) into ``other``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import ParamSpec, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# The *_created series double every counter's series count and no dashboard here reads them.
disable_created_metrics()
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Reads and errors answer in milliseconds, a generation in seconds to minutes (a 50-step 512x512
# video takes 12-13 s on an H100, a 1280x704 one about 40 s, the tiny CPU model a fraction of a
# second): one set of buckets that resolves both ends.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180,
                   300, 600, 1200)
ENCODE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    "i2v_http_requests", "HTTP requests answered, by route template, method, status and caller key name.",
    ["route", "method", "status", "key"], registry=REGISTRY)
HTTP_LATENCY = Histogram(
    "i2v_http_request_duration_seconds", "Time from request to the end of the response, by route template.",
    ["route", "method"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
SYNC_GENERATIONS_OPEN = Gauge(
    "i2v_sync_generations_open", "POST /api/v1/generate calls being answered now, waiting ones included.",
    registry=REGISTRY)
GENERATIONS_IN_FLIGHT = Gauge(
    "i2v_generations_in_flight", "Triton inferences this gateway is waiting for (synchronous and job).",
    registry=REGISTRY)
SYNC_GENERATIONS_RUNNING = Gauge(
    "i2v_sync_generations_running", "POST /api/v1/generate calls past admission: preparing, generating, encoding.",
    registry=REGISTRY)
CACHE_LOOKUPS = Counter(
    "i2v_cache_lookups", "Result-cache lookups of seeded requests, by result (hit, miss).", ["result"],
    registry=REGISTRY)
ENCODE_SECONDS = Histogram(
    "i2v_encode_seconds", "Time to encode one video file from the model's frames, by output format.", ["format"],
    buckets=ENCODE_BUCKETS, registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter(
    "i2v_webhook_deliveries", "Webhook delivery attempts, by outcome (delivered, failed).", ["outcome"],
    registry=REGISTRY)
JOBS_ENDED = Counter(
    "i2v_jobs_ended", "Jobs that reached a final state (succeeded, failed, cancelled), counted by the replica "
    "whose write ended them.", ["state"], registry=REGISTRY)
TRITON_ERRORS = Counter(
    "i2v_triton_errors", "Failed Triton inference calls, by gRPC status (unavailable, deadline_exceeded, ...).",
    ["kind"], registry=REGISTRY)

KEY_WORK = Counter(
    "i2v_key_work", "Work caused per key (usage, issue 24), by unit: requests, videos, frames, compute_units "
    "(10^6 pixel-steps), model_seconds, cache_hits, failed. Counted by the replica that recorded it.",
    ["key", "unit"], registry=REGISTRY)
KEY_LABELS_MAX = 50
_key_labels: set[str] = set()
MODEL_READY = Gauge(
    "i2v_model_ready", "1 while Triton's model can serve as far as this gateway knows (what /readyz reports of "
    "the model), 0 while it cannot: Triton away, the model not ready, or its process dead.", registry=REGISTRY)
MODEL_PROCESS_LOST = Counter(
    "i2v_model_process_lost", "Triton calls that failed because the model's process died under them.",
    registry=REGISTRY)

GENERATE_ROUTE = "/api/v1/generate"
UNMATCHED_ROUTE = "unmatched"  # 404s and probes for paths that do not exist: one series, not one each


def key_label(caller: str | None) -> str:
    """The caller's key name as a label value: JWT subjects as one value, and past the first
    KEY_LABELS_MAX key names a process sees, 'other' (keys made at run time have no bound of their own)."""
    if not caller:
        return "-"
    if caller.startswith("jwt:"):
        return "jwt"
    if caller not in _key_labels:
        if len(_key_labels) >= KEY_LABELS_MAX:
            return "other"
        _key_labels.add(caller)
    return caller


def count_key_work(caller: str, counts: dict[str, float]) -> None:
    """One generation's usage into ``i2v_key_work``."""
    label = key_label(caller)
    for unit, value in counts.items():
        if value:
            KEY_WORK.labels(key=label, unit=unit).inc(value)


def triton_error_kind(status: object) -> str:
    """``StatusCode.UNAVAILABLE`` (tritonclient's gRPC status) as ``unavailable``."""
    text = str(status or "unknown")
    return text.rsplit(".", 1)[-1].lower() or "unknown"


def count_triton_error(status: object) -> None:
    TRITON_ERRORS.labels(kind=triton_error_kind(status)).inc()


def count_cache_lookup(hit: object) -> None:
    CACHE_LOOKUPS.labels(result="miss" if hit is None else "hit").inc()


def count_delivery(error: str | None) -> None:
    WEBHOOK_DELIVERIES.labels(outcome="failed" if error else "delivered").inc()


P = ParamSpec("P")
T = TypeVar("T")


def in_progress(gauge: Gauge) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorate a coroutine function: ``gauge`` counts the calls running now.

    prometheus-client's own ``track_inprogress`` decorator is for plain functions; on a coroutine
    function it would count the creation of the coroutine, not the time it runs."""

    def decorate(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(function)
        async def tracked(*args: P.args, **kwargs: P.kwargs) -> T:
            gauge.inc()
            try:
                return await function(*args, **kwargs)
            finally:
                gauge.dec()

        return tracked

    return decorate


class SnapshotCollector(Collector):
    """Gauges whose values are read at scrape time (``refresh``) rather than kept up to date:
    the jobs by state, which live in the shared store, and the synchronous requests waiting for
    admission, derived from two live gauges."""

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}

    def set_jobs(self, counts: dict[str, int]) -> None:
        self.jobs = dict(counts)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("i2v_jobs", "Jobs in the store by state (all replicas), read at scrape time.",
                                 labels=["state"])
        for state, count in sorted(self.jobs.items()):
            jobs.add_metric([state], count)
        yield jobs
        waiting = _gauge_value(SYNC_GENERATIONS_OPEN) - _gauge_value(SYNC_GENERATIONS_RUNNING)
        yield GaugeMetricFamily("i2v_sync_generations_queued",
                                "POST /api/v1/generate calls open but not yet admitted (waiting for a key slot).",
                                value=max(0.0, waiting))


def _gauge_value(gauge: Gauge) -> float:
    return next(sample.value for metric in gauge.collect() for sample in metric.samples)


SNAPSHOT = SnapshotCollector()
REGISTRY.register(SNAPSHOT)


def render() -> bytes:
    """The registry in Prometheus's text format."""
    return generate_latest(REGISTRY)


def names() -> Iterable[str]:
    """Every metric family this module exports (the docs test checks each one is documented)."""
    return sorted({metric.name for metric in REGISTRY.collect()})
