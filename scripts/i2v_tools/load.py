"""An open-loop load generator for the whole stack: mixed traffic from several keys, what it saw, and
how the processes behind it moved. ``scripts/load_test.py`` is its command line; the load test in
``tests/load`` runs one short overload through it.

Open loop: every traffic class draws its arrivals from a Poisson process at a fixed rate and fires
each request without waiting for the previous ones. A closed-loop tool (Locust's users, each
waiting for its answer before the next request) slows down exactly when the server does, so at
three times capacity it would offer far less than three times and hide the queueing and the
refusals an overload is about. Arrivals here keep coming; the only brake is ``max_in_flight``
(so the generator itself cannot run out of sockets), and what it holds back is counted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from i2v_tools.sample_inputs import noise_png

FINAL_STATES = {"succeeded", "failed", "cancelled"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- what the OS says about a process tree --------------------------------------------------------

def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # after "pid (comm) "


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Triton's Python stubs are children of tritonserver)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children[int(_stat_fields(int(entry.name))[1])].append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def is_python_stub(pid: int) -> bool:
    """Triton's Python backend stub (its comm is cut to 15 characters, so read the command line)."""
    try:
        return b"triton_python_backend_stub" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@dataclass
class ProcessReading:
    rss_mib: float = 0.0
    # RSS in its kinds (/proc/PID/status): the heap and stacks; shared memory touched (Triton's
    # /dev/shm regions); mapped files. A soak tells which one grows.
    anon_mib: float = 0.0
    shmem_mib: float = 0.0
    file_mib: float = 0.0
    fds: int = 0
    cpu_s: float = 0.0
    processes: int = 0


RSS_KINDS = {"RssAnon:": "anon_mib", "RssShmem:": "shmem_mib", "RssFile:": "file_mib"}


def read_processes(pids: list[int]) -> ProcessReading:
    """RSS (and its kinds), open file descriptors and CPU seconds (user + system), summed over ``pids``."""
    reading = ProcessReading()
    for pid in pids:
        try:
            fields = _stat_fields(pid)
            reading.cpu_s += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
            reading.rss_mib += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                words = line.split()  # "RssAnon:  123456 kB"
                if words and words[0] in RSS_KINDS:
                    kind = RSS_KINDS[words[0]]
                    setattr(reading, kind, getattr(reading, kind) + int(words[1]) / 1024)
            reading.fds += len(os.listdir(f"/proc/{pid}/fd"))
            reading.processes += 1
        except (OSError, ValueError, IndexError):
            continue  # it ended between the listing and the read
    return reading


def load_average() -> list[float]:
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]


# --- what one run offers ---

KEY_NAMES = ("probe", "flood", "steady", "sync", "openai", "batch")
# The per-key rate limit (60 a minute by default) would refuse the flood before it reaches the job
# queue; these runs raise it so the queue, its per-key cap and the fair queue are what is loaded.
# The read limit stays on (its bucket is part of a read's cost) but high enough for the CPU
# rounds' 100 back-to-back reads, which a quiet machine sends faster than the default 300 burst
# and 50 a second allow.
GATEWAY_ENV = {"I2V_RATE_LIMIT_PER_MINUTE": "1200", "I2V_RATE_LIMIT_BURST": "20",
               "I2V_READ_RATE_LIMIT_PER_MINUTE": "600000", "I2V_READ_RATE_LIMIT_BURST": "1000",
               "I2V_CACHE_MAX_BYTES": "0", "I2V_UI_ENABLED": "false", "I2V_WEBHOOK_ALLOW_PRIVATE": "true",
               "I2V_WEBHOOK_SECRET": "whsec_bG9hZC10ZXN0LXdlYmhvb2stc2VjcmV0LTMyYnl0ZXM="}


def gateway_env(tokens: dict[str, str], metrics_token: str, redis_url: str) -> dict[str, str]:
    """The gateway settings of a load run: a key per name, /metrics for the queue, the Redis store."""
    keys = ",".join(f"{name}={token}" for name, token in tokens.items())
    return {**GATEWAY_ENV, "I2V_API_KEYS": keys, "I2V_METRICS_TOKEN": metrics_token, "I2V_REDIS_URL": redis_url}

@dataclass(frozen=True)
class Workload:
    """The video every generating request asks for (tiny by default, so the CPU runs finish)."""

    width: int = 64
    height: int = 64
    num_frames: int = 8
    steps: int = 2

    def native(self, prompt: str) -> dict[str, Any]:
        return {"image_base64": base64.b64encode(noise_png(self.width, self.height)).decode(), "prompt": prompt,
                "width": self.width, "height": self.height, "num_frames": self.num_frames, "steps": self.steps}


@dataclass(frozen=True)
class TrafficClass:
    """One kind of caller: ``kind`` says what it does, ``key`` whose token it uses, ``rate`` its
    arrivals a second at 1x (``scales``: multiplied by the phase's factor, else fixed)."""

    name: str
    kind: str  # sync_generate | job_events | job_submit | poll | videos_create | batch | readyz
    key: str
    rate: float
    scales: bool = True
    generations: int = 1  # videos one request asks for (a batch asks for several)
    paced: bool = False  # evenly spaced arrivals instead of Poisson: a known count in a short run


def mixed_traffic(capacity: float) -> list[TrafficClass]:
    """The mix of issue 23 at 1x ``capacity`` (videos a second the stack finishes): the quiet keys
    ask for 30% of it between them, each within its fair share, at every factor; ``flood`` asks
    for the rest at 1x and grows with the factor (at 3x it asks for 2.7x capacity alone)."""
    return [
        TrafficClass("flood jobs", "job_submit", "flood", rate=0.7 * capacity),
        TrafficClass("steady jobs + events", "job_events", "steady", rate=0.1 * capacity, scales=False),
        TrafficClass("sync generate", "sync_generate", "sync", rate=0.05 * capacity, scales=False),
        TrafficClass("/v1/videos create", "videos_create", "openai", rate=0.05 * capacity, scales=False),
        TrafficClass("batch (2 items, webhooks)", "batch", "batch", rate=0.05 * capacity, scales=False,
                     generations=2),
        TrafficClass("job polls", "poll", "flood", rate=4.0, scales=False, generations=0),
        TrafficClass("/readyz", "readyz", "", rate=2.0, scales=False, generations=0),
    ]


# --- what one run saw ---------------------------------------------------------------------------------

@dataclass
class Answer:
    at: float  # seconds since the run started
    traffic: str
    key: str
    status: int  # 0: no answer (timeout or connection error)
    latency_s: float
    retry_after: bool = False
    outcome: str = ""  # "timeout", "error", else empty


@dataclass
class JobTrack:
    job_id: str
    key: str
    traffic: str
    phase: str
    status: str = "queued"
    attempts: int = 0
    queued_s: float | None = None  # started_at - created_at, from the gateway's own clock
    run_s: float | None = None
    final_events: int = 0  # final SSE events seen (a stream watches only some jobs)
    created_s: float | None = None  # seconds since the run started, by the gateway's clock


class WebhookSink:
    """A real HTTP server for batch callbacks: counts deliveries per job and per webhook-id."""

    def __init__(self) -> None:
        self.completed: dict[str, set[str]] = defaultdict(set)  # job id -> webhook-ids of 'completed'
        self.deliveries = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    message = json.loads(body)
                    data = message.get("data") or {}
                    job_id = data.get("job_id") or data.get("id") or (data.get("job") or {}).get("job_id")
                except (ValueError, AttributeError):
                    message, job_id = {}, None
                with sink._lock:
                    sink.deliveries += 1
                    # The 'completed' event's type names the end: job.succeeded, job.failed, job.cancelled.
                    if job_id and str(message.get("type", "")).removeprefix("job.") in FINAL_STATES:
                        sink.completed[job_id].add(self.headers.get("webhook-id", ""))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/load"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Targets:
    """What the run talks to and watches."""

    gateway_url: str
    tokens: dict[str, str]  # key name -> bearer token
    gateway_pid: int | None = None
    triton_pid: int | None = None
    triton_http_url: str | None = None  # host:port, for Triton's request and execution counts
    metrics_token: str | None = None  # the gateway's /metrics: jobs queued in the store
    redis_url: str | None = None


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 4)
    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


class LoadRun:
    """Fires traffic classes open-loop, keeps every answer and job, samples the processes."""

    def __init__(self, targets: Targets, workload: Workload = Workload(), max_in_flight: int = 400,
                 request_timeout_s: float = 30.0, generate_timeout_s: float = 120.0, seed: int = 23) -> None:
        self.targets = targets
        self.workload = workload
        self.max_in_flight = max_in_flight
        self.request_timeout_s = request_timeout_s
        self.generate_timeout_s = generate_timeout_s
        self.rng = random.Random(seed)
        self.answers: list[Answer] = []
        self.jobs: dict[str, JobTrack] = {}
        self.offered: Counter[str] = Counter()  # videos asked for, per key
        self.held_back: Counter[str] = Counter()  # arrivals the generator dropped at max_in_flight
        self.samples: list[dict[str, Any]] = []
        self.sync_succeeded = 0
        self.sync_started = 0
        self.phase = "warm-up"
        self.webhooks = WebhookSink()
        self._tasks: set[asyncio.Task] = set()
        self._t0 = time.monotonic()
        self._t0_wall = time.time()
        self._body = workload.native("a load test")
        self.client = httpx.AsyncClient(base_url=targets.gateway_url, timeout=request_timeout_s,
                                        limits=httpx.Limits(max_connections=max_in_flight + 20,
                                                            max_keepalive_connections=100))

    def now(self) -> float:
        return time.monotonic() - self._t0

    def _headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.targets.tokens[key]}"} if key else {}

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()
        self.webhooks.close()

    # -- one request, timed ------------------------------------------------------------------------

    async def _call(self, traffic: TrafficClass, method: str, url: str, timeout: float | None = None,
                    **kwargs: Any) -> httpx.Response | None:
        started = time.monotonic()
        at = self.now()
        try:
            response = await self.client.request(method, url, headers=self._headers(traffic.key),
                                                 timeout=timeout or self.request_timeout_s, **kwargs)
        except httpx.TimeoutException:
            self.answers.append(Answer(at, traffic.name, traffic.key, 0, time.monotonic() - started, outcome="timeout"))
            return None
        except httpx.HTTPError:
            self.answers.append(Answer(at, traffic.name, traffic.key, 0, time.monotonic() - started, outcome="error"))
            return None
        self.answers.append(Answer(at, traffic.name, traffic.key, response.status_code, time.monotonic() - started,
                                   retry_after="retry-after" in response.headers))
        return response

    def _track(self, job: dict[str, Any], traffic: TrafficClass) -> JobTrack:
        track = self.jobs.setdefault(job["job_id"], JobTrack(job["job_id"], traffic.key, traffic.name, self.phase))
        self._update(track, job)
        return track

    def _update(self, track: JobTrack, job: dict[str, Any]) -> None:
        track.status = job.get("status", track.status)
        track.attempts = job.get("attempts", track.attempts)
        created, started, finished = (job.get(name) for name in ("created_at", "started_at", "finished_at"))
        if created and track.created_s is None:
            track.created_s = _iso_seconds(created) - self._t0_wall
        if created and started:
            track.queued_s = _seconds_between(created, started)
        if started and finished:
            track.run_s = _seconds_between(started, finished)

    # -- what each kind of caller does ---------------------------------------------------------

    async def _job_submit(self, traffic: TrafficClass) -> JobTrack | None:
        self.offered[traffic.key] += 1
        response = await self._call(traffic, "POST", "/api/v1/jobs", json=self._body)
        if response is None or response.status_code not in (200, 202):
            return None
        return self._track(response.json(), traffic)

    async def _job_events(self, traffic: TrafficClass) -> None:
        track = await self._job_submit(traffic)
        if track is None:
            return
        started = time.monotonic()
        at = self.now()
        status = 0
        try:
            async with self.client.stream("GET", f"/api/v1/jobs/{track.job_id}/events",
                                          headers=self._headers(traffic.key),
                                          timeout=httpx.Timeout(self.generate_timeout_s, read=60)) as stream:
                status = stream.status_code
                event = ""
                async for line in stream.aiter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event in FINAL_STATES:
                        track.final_events += 1
                        self._update(track, json.loads(line.split(":", 1)[1]).get("job") or {})
            outcome = ""
        except httpx.TimeoutException:
            outcome = "timeout"
        except httpx.HTTPError:
            outcome = "error"
        self.answers.append(Answer(at, "event stream (to the end)", traffic.key, status, time.monotonic() - started,
                                   outcome=outcome))

    async def _sync_generate(self, traffic: TrafficClass) -> None:
        self.offered[traffic.key] += 1
        self.sync_started += 1
        response = await self._call(traffic, "POST", "/api/v1/generate", timeout=self.generate_timeout_s,
                                    json={**self._body, "seed": self.rng.randrange(2**31)})
        if response is not None and response.status_code == 200:
            self.sync_succeeded += 1

    async def _videos_create(self, traffic: TrafficClass) -> None:
        self.offered[traffic.key] += 1
        w = self.workload
        response = await self._call(traffic, "POST", "/v1/videos", json={
            "prompt": "a load test", "size": f"{w.width}x{w.height}", "num_frames": w.num_frames,
            "num_inference_steps": w.steps, "input_reference": "data:image/png;base64," + self._body["image_base64"]})
        if response is not None and response.status_code == 200:
            self._track({"job_id": response.json()["id"], "status": "queued"}, traffic)

    async def _batch(self, traffic: TrafficClass) -> None:
        self.offered[traffic.key] += traffic.generations
        defaults = {key: value for key, value in self._body.items() if key != "prompt"}
        response = await self._call(traffic, "POST", "/api/v1/batch", json={
            "defaults": defaults, "items": [{"prompt": f"item {i}"} for i in range(traffic.generations)],
            "callback_url": self.webhooks.url})
        if response is not None and response.status_code == 202:
            for item in response.json()["items"]:
                if item.get("job"):
                    self._track(item["job"], traffic)

    async def _poll(self, traffic: TrafficClass) -> None:
        open_jobs = [t for t in self.jobs.values() if t.status not in FINAL_STATES and t.key == traffic.key]
        if not open_jobs:
            return
        track = self.rng.choice(open_jobs)
        response = await self._call(traffic, "GET", f"/api/v1/jobs/{track.job_id}")
        if response is not None and response.status_code == 200:
            self._update(track, response.json())

    async def _readyz(self, traffic: TrafficClass) -> None:
        await self._call(traffic, "GET", "/readyz")

    def _action(self, traffic: TrafficClass) -> Callable[[TrafficClass], Awaitable[Any]]:
        return {"job_submit": self._job_submit, "job_events": self._job_events, "sync_generate": self._sync_generate,
                "videos_create": self._videos_create, "batch": self._batch, "poll": self._poll,
                "readyz": self._readyz}[traffic.kind]

    # -- arrivals -----------------------------------------------------------------------------------

    def _fire(self, traffic: TrafficClass) -> None:
        if len(self._tasks) >= self.max_in_flight:
            self.held_back[traffic.name] += 1
            return
        task = asyncio.create_task(self._action(traffic)(traffic))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _arrivals(self, traffic: TrafficClass, rate: float, until: float) -> None:
        if rate <= 0:
            return
        # Paced: the first at half an interval, so ``rate * duration`` of them land inside the run.
        due = time.monotonic() - (0.5 / rate if traffic.paced else 0.0)
        while True:
            due += 1 / rate if traffic.paced else self.rng.expovariate(rate)
            if due >= until:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self._fire(traffic)

    async def offer(self, classes: list[TrafficClass], factor: float, duration_s: float, phase: str,
                    sample_every_s: float = 1.0) -> dict[str, float]:
        """Run ``classes`` at ``factor`` for ``duration_s`` (arrivals stop then; answers are awaited)."""
        self.phase = phase
        start = self.now()
        until = time.monotonic() + duration_s
        sampler = asyncio.create_task(self._sample_until(until, sample_every_s))
        await asyncio.gather(*(self._arrivals(c, c.rate * (factor if c.scales else 1.0), until) for c in classes))
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await sampler
        return {"start_s": round(start, 2), "end_s": round(self.now(), 2)}

    async def drain(self, timeout_s: float) -> list[JobTrack]:
        """Poll every job not seen ending until it ends; the ones still open at ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            open_jobs = [t for t in self.jobs.values() if t.status not in FINAL_STATES]
            if not open_jobs or time.monotonic() > deadline:
                return open_jobs
            for track in open_jobs:
                response = await self.client.get(f"/api/v1/jobs/{track.job_id}", headers=self._headers(track.key))
                if response.status_code == 200:
                    self._update(track, response.json())
            await self._sample_once()
            await asyncio.sleep(0.5)

    # -- the processes behind it ------------------------------------------------------------------

    async def _sample_until(self, until: float, every_s: float) -> None:
        while time.monotonic() < until:
            await self._sample_once()
            await asyncio.sleep(every_s)
        await self._sample_once()

    async def _sample_once(self) -> None:
        sample: dict[str, Any] = {"t": round(self.now(), 2), "phase": self.phase, "loadavg": load_average()[0],
                                  "in_flight": len(self._tasks)}
        if self.targets.gateway_pid:
            sample["gateway"] = asdict(read_processes([self.targets.gateway_pid]))
        if self.targets.triton_pid:
            tree = process_tree(self.targets.triton_pid)
            stubs = [pid for pid in tree if is_python_stub(pid)]
            sample["tritonserver"] = asdict(read_processes([pid for pid in tree if pid not in stubs]))
            sample["triton_stubs"] = asdict(read_processes(stubs))
        if self.targets.metrics_token:
            sample["jobs_queued"] = await self._jobs_queued()
        if self.targets.redis_url:
            sample["redis_used_mib"] = await asyncio.to_thread(redis_used_mib, self.targets.redis_url)
        self.samples.append(sample)

    async def _jobs_queued(self) -> float | None:
        try:
            response = await self.client.get("/metrics", headers={"Authorization":
                                                                  f"Bearer {self.targets.metrics_token}"})
        except httpx.HTTPError:
            return None
        for line in response.text.splitlines():
            if line.startswith('i2v_jobs{state="queued"}'):
                return float(line.split()[-1])
        return None

    def triton_busy_s(self) -> float | None:
        """Seconds Triton's instances spent executing the model so far (compute of every batch):
        the service time the capacity planner is fed, free of the waits in any queue."""
        if not self.targets.triton_http_url:
            return None
        import tritonclient.http as httpclient

        from gateway.generation.triton_inputs import MODEL_NAME
        stats = httpclient.InferenceServerClient(self.targets.triton_http_url).get_inference_statistics(MODEL_NAME)
        batches = stats["model_stats"][0].get("batch_stats", [])
        return sum(int(batch["compute_infer"]["ns"]) for batch in batches) / 1e9

    def triton_counts(self) -> tuple[int, int] | None:
        if not self.targets.triton_http_url:
            return None
        import tritonclient.http as httpclient

        from i2v_tools.triton_stats import model_counts
        return model_counts(httpclient.InferenceServerClient(self.targets.triton_http_url))

    # -- the report -------------------------------------------------------------------------------

    def traffic_summary(self, since_s: float = 0.0, until_s: float = math.inf) -> dict[str, dict[str, Any]]:
        by_class: dict[str, list[Answer]] = defaultdict(list)
        for answer in self.answers:
            if since_s <= answer.at < until_s:
                by_class[answer.traffic].append(answer)
        summary = {}
        for name, answers in by_class.items():
            answered = [a for a in answers if a.status]
            summary[name] = {
                "requests": len(answers),
                "accepted": sum(200 <= a.status < 300 for a in answers),
                "refused_429_with_retry_after": sum(a.status == 429 and a.retry_after for a in answers),
                "refused_429_without_retry_after": sum(a.status == 429 and not a.retry_after for a in answers),
                "other_4xx": sum(400 <= a.status < 500 and a.status != 429 for a in answers),
                "5xx": sum(a.status >= 500 for a in answers),
                "timeouts": sum(a.outcome == "timeout" for a in answers),
                "connection_errors": sum(a.outcome == "error" for a in answers),
                "latency_s": percentiles([a.latency_s for a in answered]),
                "accepted_latency_s": percentiles([a.latency_s for a in answered if 200 <= a.status < 300]),
                "held_back_by_generator": self.held_back.get(name, 0),
            }
        return summary

    def job_summary(self) -> dict[str, Any]:
        statuses = Counter(t.status for t in self.jobs.values())
        per_key: dict[str, dict[str, Any]] = {}
        for key, offered in self.offered.items():
            tracks = [t for t in self.jobs.values() if t.key == key]
            succeeded = sum(t.status == "succeeded" for t in tracks)
            if key == "sync":
                succeeded, accepted = self.sync_succeeded, self.sync_succeeded
            else:
                accepted = len(tracks)
            per_key[key] = {"videos_asked": offered, "accepted": accepted, "succeeded": succeeded,
                            "share_served": round(succeeded / offered, 3) if offered else None}
        queued = [t.queued_s for t in self.jobs.values() if t.queued_s is not None]
        webhook_jobs = [t for t in self.jobs.values() if t.traffic.startswith("batch") and t.status in FINAL_STATES]
        return {
            "accepted": len(self.jobs),
            "ended": {state: statuses.get(state, 0) for state in sorted(FINAL_STATES)},
            "not_ended": sum(n for state, n in statuses.items() if state not in FINAL_STATES),
            "started_more_than_once": sum(t.attempts > 1 for t in self.jobs.values()),
            "streams_with_other_than_one_final_event": sum(
                t.final_events != 1 for t in self.jobs.values() if t.traffic.startswith("steady")
                and t.status in FINAL_STATES),
            "webhook_jobs_completed_once": sum(len(self.webhooks.completed.get(t.job_id, ())) == 1
                                               for t in webhook_jobs),
            "webhook_jobs_ended": len(webhook_jobs),
            "sync_generations": {"sent": self.sync_started, "succeeded": self.sync_succeeded},
            "queue_wait_s": {**percentiles(queued), "mean": round(statistics.fmean(queued), 4) if queued else None},
            "per_key": per_key,
        }


def redis_used_mib(url: str) -> float | None:
    import redis

    try:
        return int(redis.Redis.from_url(url, socket_timeout=2).info("memory")["used_memory"]) / 2**20
    except redis.RedisError:
        return None


def _seconds_between(earlier: str, later: str) -> float:
    return _iso_seconds(later) - _iso_seconds(earlier)


def _iso_seconds(moment: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(moment).timestamp()


def cpu_per_request(samples: list[dict[str, Any]], answers: list[Answer], process: str,
                    per: Callable[[Answer], bool]) -> dict[str, Any]:
    """CPU seconds of ``process`` (a sample field) per answered request that ``per`` selects, per
    interval between samples; the median and spread of those ratios across intervals."""
    ratios, total_cpu, total_requests = [], 0.0, 0
    for before, after in zip(samples, samples[1:], strict=False):
        if process not in before or process not in after:
            continue
        cpu = after[process]["cpu_s"] - before[process]["cpu_s"]
        requests = sum(1 for a in answers if before["t"] <= a.at + a.latency_s < after["t"] and a.status and per(a))
        total_cpu += cpu
        total_requests += requests
        if requests >= 3:
            ratios.append(cpu / requests)
    if not ratios:
        return {"intervals": 0}
    ordered = sorted(ratios)
    return {"intervals": len(ratios), "ms_mean": round(1000 * total_cpu / max(total_requests, 1), 2),
            "ms_median": round(1000 * statistics.median(ordered), 2),
            "ms_p10": round(1000 * ordered[int(0.1 * (len(ordered) - 1))], 2),
            "ms_p90": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 2),
            "requests": total_requests, "cpu_s": round(total_cpu, 2)}


async def measure_capacity(run: LoadRun, key: str, jobs: int, timeout_s: float = 300) -> dict[str, float]:
    """Videos a second the stack finishes when it never runs dry: ``jobs`` submitted at once, the
    rate from the first start to the last end by the gateway's own timestamps."""
    traffic = TrafficClass("capacity probe", "job_submit", key, rate=0)
    tracks = [t for t in await asyncio.gather(*(run._job_submit(traffic) for _ in range(jobs))) if t]
    deadline = time.monotonic() + timeout_s
    raw: dict[str, dict[str, Any]] = {}
    while len(raw) < len(tracks) and time.monotonic() < deadline:
        for track in tracks:
            if track.job_id in raw:
                continue
            body = (await run.client.get(f"/api/v1/jobs/{track.job_id}", headers=run._headers(key))).json()
            run._update(track, body)
            if body["status"] in FINAL_STATES:
                raw[track.job_id] = body
        await asyncio.sleep(0.2)
    done = [body for body in raw.values() if body["status"] == "succeeded"]
    if len(done) < 2:
        answered = Counter(a.status for a in run.answers)
        ended = Counter(body["status"] for body in raw.values())
        errors = [body.get("error") for body in raw.values() if body.get("error")][:1]
        raise RuntimeError(f"capacity probe: only {len(done)} of {jobs} jobs succeeded (answers {dict(answered)}, "
                           f"ended {dict(ended)}, e.g. {errors})")
    first = min(body["started_at"] for body in done)
    last = max(body["finished_at"] for body in done)
    span = _seconds_between(first, last)
    runs = [_seconds_between(b["started_at"], b["finished_at"]) for b in done]
    return {"videos_per_s": round(len(done) / span, 3), "jobs": len(done), "span_s": round(span, 2),
            "run_s_median": round(statistics.median(runs), 3)}


async def idle_latencies(run: LoadRun, job_id: str, key: str, rounds: int = 20) -> dict[str, dict[str, float | None]]:
    """/readyz and one job read, one at a time with nothing else running: the yardstick that the
    latencies under load are held to (a ratio of these, so the machine's speed cancels out)."""
    probes = {"/readyz": ("", "/readyz"), "job read": (key, f"/api/v1/jobs/{job_id}")}
    result = {}
    for name, (probe_key, path) in probes.items():
        times = []
        for _ in range(rounds):
            started = time.monotonic()
            response = await run.client.get(path, headers=run._headers(probe_key))
            times.append(time.monotonic() - started)
            response.raise_for_status()
        result[name] = percentiles(times)
    return result


def plot(report: dict[str, Any], path: Path) -> None:
    """Latency, jobs queued and RSS over the run's time, one panel each; phases shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, answers = report["samples"], report["answers"]
    fig, (lat, queue, rss) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    for traffic in sorted({a["traffic"] for a in answers}):
        points = [(a["at"], a["latency_s"]) for a in answers if a["traffic"] == traffic and a["status"]]
        if points:
            lat.scatter(*zip(*points, strict=True), s=4, label=traffic)
    lat.set_yscale("log")
    lat.set_ylabel("latency s (log)")
    lat.legend(fontsize=7, markerscale=3, loc="upper left")
    times = [s["t"] for s in samples]
    if any("jobs_queued" in s for s in samples):
        queue.plot(times, [s.get("jobs_queued") for s in samples], label="jobs queued (store)")
    queue.plot(times, [s["in_flight"] for s in samples], label="requests in flight (generator)")
    queue.set_ylabel("count")
    queue.legend(fontsize=7, loc="upper left")
    for process in ("gateway", "tritonserver", "triton_stubs"):
        if any(process in s for s in samples):
            rss.plot(times, [s.get(process, {}).get("rss_mib") for s in samples], label=f"{process} RSS MiB")
    if any(s.get("redis_used_mib") is not None for s in samples):
        rss.plot(times, [s.get("redis_used_mib") for s in samples], label="Redis used MiB")
    rss.set_ylabel("MiB")
    rss.set_xlabel("seconds since the start")
    rss.legend(fontsize=7, loc="upper left")
    for phase in report["phases"]:
        for axis in (lat, queue, rss):
            axis.axvspan(phase["start_s"], phase["end_s"], alpha=0.08, color="gray")
        lat.text(phase["start_s"], lat.get_ylim()[1], phase["name"], fontsize=8, va="top")
    fig.suptitle(report.get("title", "load run"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


async def cpu_costs(run: LoadRun, key: str, job_id: str, rounds: int = 5, reads: int = 100,
                    videos: int = 4) -> dict[str, Any]:
    """The gateway's CPU time per request of each kind, alone and back to back, from /proc: a busy
    machine stretches wall-clock time but hardly the CPU seconds a process is charged. Each round
    sends ``reads`` job reads, ``reads`` /readyz and ``videos`` synchronous generations; the video
    rounds also read tritonserver's CPU (its Python stub included), the model's cost beside ours."""
    assert run.targets.gateway_pid and run.targets.triton_pid
    gateway = [run.targets.gateway_pid]

    async def charged(count: int, send: Callable[[], Awaitable[httpx.Response]]) -> tuple[float, float]:
        triton = process_tree(run.targets.triton_pid or 0)
        before, model_before = read_processes(gateway).cpu_s, read_processes(triton).cpu_s
        for _ in range(count):
            (await send()).raise_for_status()
        return (read_processes(gateway).cpu_s - before) / count, (read_processes(triton).cpu_s - model_before) / count

    kinds: dict[str, list[tuple[float, float]]] = defaultdict(list)
    body = {**run._body}
    for _ in range(rounds):
        kinds["job read"].append(await charged(reads, lambda: run.client.get(
            f"/api/v1/jobs/{job_id}", headers=run._headers(key))))
        kinds["/readyz"].append(await charged(reads, lambda: run.client.get("/readyz")))
        kinds["sync generate (one video)"].append(await charged(videos, lambda: run.client.post(
            "/api/v1/generate", headers=run._headers(key), timeout=run.generate_timeout_s,
            json={**body, "seed": run.rng.randrange(2**31)})))
    result = {}
    for name, rows in kinds.items():
        ms = sorted(1000 * gateway_s for gateway_s, _ in rows)
        result[name] = {"gateway_cpu_ms_median": round(statistics.median(ms), 2), "gateway_cpu_ms_min": round(ms[0], 2),
                        "gateway_cpu_ms_max": round(ms[-1], 2), "rounds": rounds}
        if name.startswith("sync"):
            model = sorted(1000 * model_s for _, model_s in rows)
            result[name].update({"triton_cpu_ms_median": round(statistics.median(model), 1),
                                 "triton_cpu_ms_min": round(model[0], 1), "triton_cpu_ms_max": round(model[-1], 1)})
    return {"per_request": result, "clock_ticks_per_s": CLK_TCK, "loadavg": load_average()}
