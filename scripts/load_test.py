"""Load the whole stack with mixed traffic at 0.5x, 1x and 3x its measured capacity, or soak it.

Open loop (asyncio on httpx, ``scripts/i2v_tools/load.py`` says why not Locust): seven traffic
classes from five keys, one of them flooding. It measures the stack's capacity first (jobs
submitted at once, finished back to back), then offers each factor of it for ``--phase-s`` and
waits for every accepted job to end before the next. It writes a JSON report (per class:
p50/p95/p99, accepted, 429 with and without Retry-After, 5xx, timeouts; jobs accepted and ended;
Triton's generations against jobs; each key's share served; RSS, fds and CPU of the gateway,
tritonserver and its Python stubs; Redis memory; jobs queued) and a PNG of it over time.

    # its own tritonserver (tiny model), Redis and gateway, on free ports
    python scripts/load_test.py --json load.json --png load.png
    python scripts/load_test.py --soak-min 30 --json soak.json --png soak.png   # for an operator
    # a running stack: its URL, a token for each key name, and its pids for the process readings
    python scripts/load_test.py --gateway http://host:8000 --token flood=... --token steady=... ...

(``scripts/bench_load.py`` is another job: it times loading the model's weights.)

``--phase-s`` bounds each phase; ``--factors 0.5,1,3`` picks them. Wall-clock figures depend on
what else runs on the machine: the report records the load average beside every sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from i2v_tools.load import (
    KEY_NAMES,
    RSS_KINDS,
    LoadRun,
    Targets,
    Workload,
    cpu_costs,
    cpu_per_request,
    gateway_env,
    idle_latencies,
    load_average,
    measure_capacity,
    mixed_traffic,
    plot,
)
from i2v_tools.servers import GatewayServer, RedisServer, TritonServer, stop_all
from i2v_tools.tiny_model import TINY_MODEL, build_and_save


async def run_phases(run: LoadRun, factors: list[float], phase_s: float, drain_s: float,
                     sample_every_s: float, capacity_jobs: int, cost_rounds: int) -> dict[str, Any]:
    capacity = await measure_capacity(run, "probe", capacity_jobs)
    some_job = next(iter(run.jobs))
    idle = await idle_latencies(run, some_job, "probe")
    costs = await cpu_costs(run, "probe", some_job, cost_rounds) if cost_rounds and run.targets.triton_pid else None
    classes = mixed_traffic(capacity["videos_per_s"])
    phases = []
    for factor in factors:
        name = f"{factor:g}x"
        counts_before, busy_before = run.triton_counts(), run.triton_busy_s()
        jobs_before = set(run.jobs)
        sync_before = run.sync_succeeded
        loadavg_before = load_average()
        span = await run.offer(classes, factor, phase_s, name, sample_every_s)
        not_ended = await run.drain(drain_s)
        counts_after, busy_after = run.triton_counts(), run.triton_busy_s()
        new_jobs = [run.jobs[j] for j in set(run.jobs) - jobs_before]
        phase = {"name": name, "factor": factor, **span, "drained_s": round(run.now(), 2),
                 "loadavg_before": loadavg_before, "loadavg_after": load_average(),
                 "traffic": run.traffic_summary(span["start_s"], span["end_s"] + 0.001),
                 "jobs_accepted": len(new_jobs), "jobs_not_ended": len([t for t in not_ended if t in new_jobs]),
                 "jobs_succeeded": sum(t.status == "succeeded" for t in new_jobs),
                 "sync_succeeded": run.sync_succeeded - sync_before}
        queued = [t.queued_s for t in new_jobs if t.queued_s is not None]
        phase["queue_wait_s"] = {"mean": round(sum(queued) / len(queued), 3) if queued else None,
                                 **_percentiles(queued)}
        if counts_before and counts_after:
            phase["triton_requests"] = counts_after[0] - counts_before[0]
            phase["triton_executions"] = counts_after[1] - counts_before[1]
        if busy_before is not None and busy_after is not None and phase.get("triton_requests"):
            phase["triton_service_s"] = round((busy_after - busy_before) / phase["triton_requests"], 3)
        phases.append(phase)
    return {"capacity": capacity, "idle_latency_s": idle, "cpu_costs": costs, "classes": [asdict(c) for c in classes],
            "phases": phases}


def _percentiles(values: list[float]) -> dict[str, float | None]:
    from i2v_tools.load import percentiles
    return percentiles(values)


async def soak(run: LoadRun, minutes: float, factor: float, sample_every_s: float, capacity_jobs: int) -> dict:
    capacity = await measure_capacity(run, "probe", capacity_jobs)
    classes = mixed_traffic(capacity["videos_per_s"])
    span = await run.offer(classes, factor, minutes * 60, f"soak {factor:g}x", sample_every_s)
    await run.drain(120)
    return {"capacity": capacity, "classes": [asdict(c) for c in classes],
            "phases": [{"name": f"soak {factor:g}x, {minutes:g} min", "factor": factor, **span,
                        "traffic": run.traffic_summary(span["start_s"], span["end_s"] + 0.001)}]}


def cost_figures(run: LoadRun) -> dict[str, Any]:
    """The gateway's CPU per request and per video beside the model's, from /proc."""
    answers = run.answers
    figures = {"gateway_cpu_per_http_request": cpu_per_request(run.samples, answers, "gateway", lambda a: True)}
    samples = [s for s in run.samples if "gateway" in s and "triton_stubs" in s]
    if len(samples) >= 2:
        videos = sum(t.status == "succeeded" for t in run.jobs.values()) + run.sync_succeeded
        gateway_cpu = samples[-1]["gateway"]["cpu_s"] - samples[0]["gateway"]["cpu_s"]
        model_cpu = (samples[-1]["triton_stubs"]["cpu_s"] - samples[0]["triton_stubs"]["cpu_s"]
                     + samples[-1]["tritonserver"]["cpu_s"] - samples[0]["tritonserver"]["cpu_s"])
        figures["per_video"] = {"videos": videos, "gateway_cpu_ms": round(1000 * gateway_cpu / max(videos, 1), 1),
                                "triton_cpu_ms": round(1000 * model_cpu / max(videos, 1), 1),
                                "gateway_share_of_cpu": round(gateway_cpu / max(gateway_cpu + model_cpu, 1e-9), 4)}
    return figures


def resource_trend(samples: list[dict[str, Any]]) -> dict[str, Any]:
    trend = {}
    for process in ("gateway", "tritonserver", "triton_stubs"):
        rows = [s[process] for s in samples if process in s]
        if rows:
            trend[process] = {"rss_mib_first": round(rows[0]["rss_mib"], 1), "rss_mib_max": round(
                max(r["rss_mib"] for r in rows), 1), "rss_mib_last": round(rows[-1]["rss_mib"], 1),
                "fds_first": rows[0]["fds"], "fds_max": max(r["fds"] for r in rows), "fds_last": rows[-1]["fds"],
                # Which kind of memory moved (a report of an older run has none).
                **{f"{kind}_change": round(rows[-1][kind] - rows[0][kind], 1) for kind in RSS_KINDS.values()
                   if kind in rows[0]}}
    redis = [s["redis_used_mib"] for s in samples if s.get("redis_used_mib") is not None]
    if redis:
        trend["redis_used_mib"] = {"first": round(redis[0], 2), "max": round(max(redis), 2),
                                   "last": round(redis[-1], 2)}
    queued = [s["jobs_queued"] for s in samples if s.get("jobs_queued") is not None]
    if queued:
        trend["jobs_queued_max"] = max(queued)
    return trend


def report_of(run: LoadRun, result: dict[str, Any], title: str) -> dict[str, Any]:
    return {"title": title, **result, "jobs": run.job_summary(), "cost": cost_figures(run),
            "resources": resource_trend(run.samples), "samples": run.samples,
            "answers": [asdict(a) for a in run.answers], "job_tracks": [asdict(t) for t in run.jobs.values()],
            "workload": asdict(run.workload)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    servers: list[Any] = []
    workdir = Path(tempfile.mkdtemp(prefix="i2v-load-"))
    try:
        if args.gateway:
            tokens = dict(item.split("=", 1) for item in args.token)
            targets = Targets(args.gateway, tokens, args.gateway_pid, args.triton_pid, args.triton_http,
                              args.metrics_token, args.redis_url)
        else:
            build_and_save(TINY_MODEL)
            triton = TritonServer(workdir / "triton", {"I2V_MODEL_PATH": str(TINY_MODEL)})
            redis = RedisServer(workdir / "redis", durable=False)
            servers += [triton, redis]
            triton.start()
            redis.start().wait_ready()
            triton.wait_ready()
            tokens = {name: secrets.token_urlsafe(16) for name in KEY_NAMES}
            metrics_token = secrets.token_urlsafe(24)
            gateway = GatewayServer(workdir / "gateway", triton.grpc_url, secrets.token_urlsafe(16),
                                    gateway_env(tokens, metrics_token, redis.url()))
            servers.append(gateway)
            gateway.start().wait_healthy()
            assert triton.process and gateway.process
            targets = Targets(gateway.url, tokens, gateway.process.pid, triton.process.pid, triton.http_url,
                              metrics_token, redis.url())
        workload = Workload(args.width, args.height, args.frames, args.steps)
        run = LoadRun(targets, workload, max_in_flight=args.max_in_flight)
        try:
            started = time.time()
            if args.soak_min:
                result = await soak(run, args.soak_min, args.soak_factor, args.sample_every_s or 5.0,
                                    args.capacity_jobs)
            else:
                factors = [float(f) for f in args.factors.split(",") if f.strip()]
                result = await run_phases(run, factors, args.phase_s, args.drain_s, args.sample_every_s or 1.0,
                                          args.capacity_jobs, args.cost_rounds)
            title = (f"{'soak' if args.soak_min else 'load'}: {workload.width}x{workload.height}, "
                     f"{workload.num_frames} frames, {workload.steps} steps; started "
                     f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}")
            report = report_of(run, result, title)
            report["wall_s"] = round(time.time() - started, 1)
        finally:
            await run.close()
        return report
    finally:
        stop_all(reversed(servers))


def print_summary(report: dict[str, Any]) -> None:
    print(report["title"])
    print(f"capacity: {report['capacity']}")
    if report.get("cpu_costs"):
        print(f"CPU per request: {json.dumps(report['cpu_costs'])}")
    for phase in report["phases"]:
        print(f"\n{phase['name']} ({phase['start_s']}-{phase['end_s']} s, load average "
              f"{phase.get('loadavg_before', ['?'])[0]} -> {phase.get('loadavg_after', ['?'])[0]}); "
              f"queue wait {phase.get('queue_wait_s')}")
        print("| class | requests | accepted | 429+RA | 429-RA | 5xx | timeouts | p50 s | p95 s | p99 s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, row in phase["traffic"].items():
            lat = row["latency_s"]
            print(f"| {name} | {row['requests']} | {row['accepted']} | {row['refused_429_with_retry_after']} | "
                  f"{row['refused_429_without_retry_after']} | {row['5xx']} | {row['timeouts']} | "
                  f"{lat['p50']} | {lat['p95']} | {lat['p99']} |")
    print(f"\njobs: {json.dumps(report['jobs'])}")
    print(f"cost: {json.dumps(report['cost'])}")
    print(f"resources: {json.dumps(report['resources'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", default="0.5,1,3", help="capacity multiples ('': none)")
    parser.add_argument("--cost-rounds", type=int, default=5, help="rounds of CPU per request (0: none)")
    parser.add_argument("--phase-s", type=float, default=60, help="seconds of arrivals per factor")
    parser.add_argument("--drain-s", type=float, default=180, help="longest wait for the jobs of a phase to end")
    parser.add_argument("--soak-min", type=float, help="one long run at --soak-factor instead of the phases")
    parser.add_argument("--soak-factor", type=float, default=0.8)
    parser.add_argument("--capacity-jobs", type=int, default=12, help="jobs submitted at once to measure capacity")
    parser.add_argument("--sample-every-s", type=float, help="process readings (default 1 s; 5 s in a soak)")
    parser.add_argument("--max-in-flight", type=int, default=400)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--gateway", help="a running gateway's URL; unset: start tritonserver, Redis and one")
    parser.add_argument("--token", action="append", default=[], help="NAME=TOKEN for each of " + ", ".join(KEY_NAMES))
    parser.add_argument("--gateway-pid", type=int)
    parser.add_argument("--triton-pid", type=int, help="tritonserver's pid (its stubs are found below it)")
    parser.add_argument("--triton-http", help="Triton's HTTP host:port, for its request counts")
    parser.add_argument("--metrics-token", help="the gateway's I2V_METRICS_TOKEN, for the jobs queued")
    parser.add_argument("--redis-url")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args(argv)
    report = asyncio.run(main_async(args))
    print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.png:
        plot(report, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
