"""Capacity planner: a discrete-event model (SimPy) of the job layer, Triton and the autoscaler.

What it models, as the code and the manifests have it:
- arrivals: Poisson, per key; admission refuses a key's job beyond ``max_queued_per_key`` queued
  (429) and anyone's beyond ``max_queued_total`` (503);
- the fair queue: a free worker takes the next job of the next key in turn (round-robin over the
  keys with work queued, ``gateway/jobs/queue.py``);
- workers: ``gateway replicas x I2V_JOB_WORKERS``, each holding one job from claim to end, and an
  MP4 encode on the gateway after the model;
- Triton: one pod a GPU, one instance a pod (``configs/gpu.pbtxt``), one video at a time
  (``batch_invariant: true``); its queue is shared by the workers of every gateway;
- the autoscaler (``deploy/k8s/overlays/gpu-prod/scaledobject.yaml``): every ``pollingInterval``
  the mean Triton queue wait of the last 2 minutes against the 10 s target, HPA's rule
  ``desired = ceil(current x metric / target)`` (10% tolerance), 1 to 8 pods, a new pod ready
  after ``--pod-start-s`` (image, 5 GB of weights), scale-down held for ``cooldownPeriod``.

Service times come from measurements: ``steps x ms/step + overhead`` with the H100 step times of
docs/PERFORMANCE.md, or ``--service-s``. Three questions:

    python scripts/capacity_planner.py fleet --wait-p95-s 60 --rates 100,500,1000,2000    # GPUs for N an hour
    python scripts/capacity_planner.py burst --rate 600 --burst-x 3 --burst-min 20      # what a burst does
    python scripts/capacity_planner.py validate load.json    # predicted vs measured waits of a CPU run
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import simpy

# H100 80GB, plain fp16, batch 1, guidance 9 (docs/PERFORMANCE.md, "GPU: the full-size model").
H100_MS_PER_STEP = {"512x512": 230.0, "1280x704": 779.0}
H100_COMPILED_MS_PER_STEP = {"512x512": 145.0}
H100_OVERHEAD_S = 1.0  # encoders and the VAE: "steps x ms/step plus about 1 s"
MP4_ENCODE_S = {"512x512": 0.3, "1280x704": 0.9}  # on the gateway, one core (PERFORMANCE.md, MP4 encoding)


@dataclass
class Fleet:
    gateways: int = 3  # gpu-prod overlay
    workers_per_gateway: int = 4  # I2V_JOB_WORKERS default
    gpus: int = 1
    autoscale: bool = False
    min_gpus: int = 1
    max_gpus: int = 8
    polling_s: float = 30
    target_wait_s: float = 10
    window_s: float = 120
    cooldown_s: float = 900
    pod_start_s: float = 120
    # "queue-wait": the shipped trigger (mean Triton queue wait against target_wait_s, HPA Value);
    # "backlog": jobs queued or running against backlog_per_gpu each (HPA AverageValue); "both": the two
    # triggers together, the larger proposal winning, as KEDA does with several triggers.
    rule: str = "queue-wait"
    backlog_per_gpu: float = 1.5
    max_queued_per_key: int = 20
    max_queued_total: int = 500


@dataclass
class Outcome:
    waits: list[float] = field(default_factory=list)  # submit -> the model starts it (store + Triton queue)
    store_waits: list[float] = field(default_factory=list)  # submit -> a worker claims it
    waits_by_key: dict[str, list[float]] = field(default_factory=dict)
    ends: list[float] = field(default_factory=list)
    refused: int = 0
    gpu_timeline: list[tuple[float, int]] = field(default_factory=list)
    queue_timeline: list[tuple[float, int]] = field(default_factory=list)
    arrivals_at: list[float] = field(default_factory=list)


class Model:
    def __init__(self, env: simpy.Environment, fleet: Fleet, service_s: float, encode_s: float,
                 cv: float, rng: random.Random) -> None:
        self.env, self.fleet, self.rng = env, fleet, rng
        self.service_s, self.encode_s, self.cv = service_s, encode_s, cv
        self.queues: dict[str, deque] = {}
        self.turn: deque[str] = deque()  # keys with work queued, in serving order
        self.queued = 0
        self.work_ready = simpy.Store(env)  # one token per queued job, so idle workers sleep
        self.gpus = simpy.PriorityResource(env, capacity=fleet.max_gpus if fleet.autoscale else fleet.gpus)
        self.active_gpus = fleet.min_gpus if fleet.autoscale else fleet.gpus
        self._holds: list[simpy.Event] = []  # GPUs held back while their pods do not exist
        self._pending_starts = 0
        self.in_flight = 0  # jobs claimed by a worker and not yet out of the model
        self.triton_waits: deque[tuple[float, float]] = deque()  # (when it started, how long it waited)
        self.out = Outcome()
        if fleet.autoscale:
            for _ in range(self.fleet.max_gpus - self.active_gpus):
                self.env.process(self._hold_one())
            self.env.process(self._autoscaler())
        for _ in range(fleet.gateways * fleet.workers_per_gateway):
            env.process(self._worker())

    # the job layer ---------------------------------------------------------------------------------
    def submit(self, key: str) -> None:
        now = self.env.now
        self.out.arrivals_at.append(now)
        queue = self.queues.setdefault(key, deque())
        if len(queue) >= self.fleet.max_queued_per_key or self.queued >= self.fleet.max_queued_total:
            self.out.refused += 1
            return
        if not queue:
            self.turn.append(key)
        queue.append((now, key))
        self.queued += 1
        self.work_ready.put(1)

    def _next_job(self) -> tuple[float, str]:
        key = self.turn.popleft()
        submitted = self.queues[key].popleft()
        if self.queues[key]:
            self.turn.append(key)
        self.queued -= 1
        return submitted

    def _worker(self):
        while True:
            yield self.work_ready.get()
            submitted, key = self._next_job()
            self.in_flight += 1
            self.out.store_waits.append(self.env.now - submitted)
            asked = self.env.now
            with self.gpus.request(priority=0) as gpu:
                yield gpu
                self.out.waits.append(self.env.now - submitted)
                self.out.waits_by_key.setdefault(key, []).append(self.env.now - submitted)
                self.triton_waits.append((self.env.now, self.env.now - asked))
                yield self.env.timeout(self._service())
            self.in_flight -= 1
            yield self.env.timeout(self.encode_s)
            self.out.ends.append(self.env.now)

    def _service(self) -> float:
        if self.cv <= 0:
            return self.service_s
        return max(0.05 * self.service_s, self.rng.gauss(self.service_s, self.cv * self.service_s))

    # the autoscaler ---------------------------------------------------------------------------------
    def _hold_one(self):
        """A pod that is not there: it takes the next free GPU before any queued request (priority)
        and keeps it until a pod start gives it back."""
        with self.gpus.request(priority=-1) as slot:
            yield slot
            if self._pending_starts:
                self._pending_starts -= 1
                return
            done = self.env.event()
            self._holds.append(done)
            yield done

    def _autoscaler(self):
        desired_history: deque[tuple[float, int]] = deque()
        while True:
            yield self.env.timeout(self.fleet.polling_s)
            now = self.env.now
            while self.triton_waits and self.triton_waits[0][0] < now - self.fleet.window_s:
                self.triton_waits.popleft()
            current = self.active_gpus
            backlog = (self.queued + self.in_flight) / self.fleet.backlog_per_gpu / current
            metric = statistics.fmean(w for _, w in self.triton_waits) if self.triton_waits else 0.0
            ratios = {"backlog": [backlog], "queue-wait": [metric / self.fleet.target_wait_s],
                      "both": [backlog, metric / self.fleet.target_wait_s]}[self.fleet.rule]
            # HPA: each trigger's proposal (10% tolerance), the largest wins.
            desired = max(current if abs(ratio - 1) <= 0.1 else math.ceil(current * ratio) for ratio in ratios)
            desired = min(self.fleet.max_gpus, max(self.fleet.min_gpus, desired))
            desired_history.append((now, desired))
            while desired_history[0][0] < now - self.fleet.cooldown_s:
                desired_history.popleft()
            if desired > current:
                self.active_gpus = desired
                for _ in range(desired - current):
                    self.env.process(self._start_pod())
            else:
                keep = max(d for _, d in desired_history)  # scale down only what the whole window agrees on
                if keep < current:
                    self.active_gpus = keep
                    for _ in range(current - keep):
                        self.env.process(self._hold_one())
            self.out.gpu_timeline.append((now, self.active_gpus))
            self.out.queue_timeline.append((now, self.queued))

    def _start_pod(self):
        yield self.env.timeout(self.fleet.pod_start_s)
        if self._holds:
            self._holds.pop(0).succeed()
        else:
            self._pending_starts += 1


def simulate(rates_per_s: dict[str, float], fleet: Fleet, service_s: float, encode_s: float = 0.0,
             duration_s: float = 4 * 3600, warmup_s: float = 600, cv: float = 0.05, seed: int = 1,
             schedule: list[tuple[float, float]] | None = None) -> dict[str, Any]:
    """``schedule``: (from second, multiplier of the rates) steps, for bursts."""
    rng = random.Random(seed)
    env = simpy.Environment()
    model = Model(env, fleet, service_s, encode_s, cv, rng)

    def multiplier(now: float) -> float:
        factor = 1.0
        for start, value in schedule or []:
            if now >= start:
                factor = value
        return factor

    def arrivals(key: str, rate: float):
        peak = rate * max([1.0] + [v for _, v in schedule or []])
        while True:  # thinning: draw at the peak rate, keep with the current one's share
            yield env.timeout(rng.expovariate(peak))
            if rng.random() < rate * multiplier(env.now) / peak:
                model.submit(key)

    for key, rate in rates_per_s.items():
        env.process(arrivals(key, rate))
    env.run(until=warmup_s + duration_s)
    return summarize(model.out, warmup_s, fleet)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 2)


def summarize(out: Outcome, warmup_s: float, fleet: Fleet) -> dict[str, Any]:
    waits = out.waits[len(out.waits) // 20:] if warmup_s else out.waits
    return {"videos_done": len(out.ends), "refused": out.refused, "arrived": len(out.arrivals_at),
            "wait_s": {"mean": round(statistics.fmean(waits), 2) if waits else None,
                       "p50": percentile(waits, 0.5), "p95": percentile(waits, 0.95), "p99": percentile(waits, 0.99)},
            "store_wait_s": {"mean": round(statistics.fmean(out.store_waits), 3) if out.store_waits else None,
                             "p95": percentile(out.store_waits, 0.95)},
            "wait_s_mean_by_key": {key: round(statistics.fmean(w), 2) for key, w in out.waits_by_key.items()},
            "gpus_max": max([g for _, g in out.gpu_timeline] or [fleet.gpus]),
            "gpu_timeline": out.gpu_timeline, "queue_timeline": out.queue_timeline}


def service_time(size: str, steps: int, compiled: bool) -> float:
    table = H100_COMPILED_MS_PER_STEP if compiled else H100_MS_PER_STEP
    return steps * table[size] / 1000 + H100_OVERHEAD_S


def fleet_table(rates_per_hour: list[float], size: str, steps: int, wait_p95_s: float, keys: int,
                compiled: bool, hours: float) -> list[dict[str, Any]]:
    """The fewest GPUs (static, with enough workers to keep them busy) for a p95 wait."""
    service_s = service_time(size, steps, compiled)
    rows = []
    for per_hour in rates_per_hour:
        rates = {f"key{i}": per_hour / 3600 / keys for i in range(keys)}
        least = math.ceil(per_hour * service_s / 3600)  # below this the queue grows without end
        for gpus in range(max(1, least), 200):
            fleet = Fleet(gpus=gpus, gateways=3, workers_per_gateway=max(4, math.ceil(gpus / 3)),
                          max_queued_per_key=10**6, max_queued_total=10**7)
            result = simulate(rates, fleet, service_s, MP4_ENCODE_S[size], duration_s=hours * 3600)
            if result["wait_s"]["p95"] is not None and result["wait_s"]["p95"] <= wait_p95_s:
                rows.append({"videos_per_hour": per_hour, "size": size, "steps": steps,
                             "service_s": round(service_s, 2), "gpus": gpus,
                             "utilisation": round(per_hour * service_s / 3600 / gpus, 2),
                             "wait_p50_s": result["wait_s"]["p50"], "wait_p95_s": result["wait_s"]["p95"]})
                break
    return rows


def replay(jobs: list[tuple[float, str]], syncs: list[float], service_s: float, until: float,
           workers: int = 4, gateway_hold_s: float = 0.0) -> list[float]:
    """Store waits of ``jobs`` (second, key) submitted at their measured times to one gateway with
    ``workers`` and one Triton instance; ``syncs`` are synchronous generations, which take a Triton
    slot without the job queue. ``gateway_hold_s``: how long a job holds its worker besides the
    model (the Triton call's way there and back, the encode, the store's writes)."""
    env = simpy.Environment()
    fleet = Fleet(gateways=1, workers_per_gateway=workers, gpus=1, max_queued_per_key=10**6, max_queued_total=10**7)
    model = Model(env, fleet, service_s, gateway_hold_s, 0.05, random.Random(1))

    def feed():
        for at, key in jobs:
            yield env.timeout(max(0.0, at - env.now))
            model.submit(key)

    def sync_call():
        with model.gpus.request(priority=0) as gpu:
            yield gpu
            yield env.timeout(model._service())

    def sync_feed():
        for at in syncs:
            yield env.timeout(max(0.0, at - env.now))
            env.process(sync_call())

    env.process(feed())
    env.process(sync_feed())
    env.run(until=until)
    return model.out.store_waits


def validate(report_path: Path) -> list[dict[str, Any]]:
    """Replays a load run's accepted jobs (their arrival times) through the model with the run's own
    service time, one Triton instance and the gateway's workers, and sets the predicted store
    waits beside the measured ones, phase by phase."""
    report = json.loads(report_path.read_text())
    capacity = report["capacity"]
    tracks = [t for t in report["job_tracks"] if t["created_s"] is not None and t["queued_s"] is not None]
    syncs = [a["at"] for a in report["answers"] if a["traffic"] == "sync generate" and a["status"] == 200]
    rows = []
    hold_s = None
    for phase in sorted(report["phases"], key=lambda p: p.get("factor", 0)):
        ours = [t for t in tracks if t["phase"] == phase["name"]]
        if not ours:
            continue
        # Triton's own compute time per video in this phase, when the run read it (the machine's
        # speed moves between phases on a shared host); else the capacity probe's.
        service_s = phase.get("triton_service_s") or 1 / capacity["videos_per_s"]
        if hold_s is None:
            # The worker's time on a job besides the model's compute, from the lightest phase,
            # where a job rarely waits in Triton's queue: its median claim-to-end time less the
            # compute. It is no small part of a tiny video (a third of the job on an idle CPU).
            runs = [t["run_s"] for t in ours if t.get("run_s") is not None]
            hold_s = max(0.0, statistics.median(runs) - service_s) if runs else 0.0
        order = sorted(ours, key=lambda t: t["created_s"])
        sync_here = [at for at in syncs if phase["start_s"] <= at < phase["end_s"]]
        predicted = replay([(t["created_s"] - phase["start_s"], t["key"]) for t in order],
                           [at - phase["start_s"] for at in sync_here], service_s,
                           until=phase["drained_s"] - phase["start_s"] + 600, gateway_hold_s=hold_s)
        measured = [t["queued_s"] for t in order]
        rows.append({"phase": phase["name"], "jobs": len(order), "service_s": round(service_s, 3),
                     "gateway_hold_s": round(hold_s, 3),
                     "measured_store_wait_s": {"mean": round(statistics.fmean(measured), 2),
                                               "p95": percentile(measured, 0.95)},
                     "predicted_store_wait_s": {"mean": round(statistics.fmean(predicted), 2) if predicted else None,
                                                "p95": percentile(predicted, 0.95)},
                     "loadavg": phase.get("loadavg_before", [None])[0]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", type=Path, help="write the result here")
    fleet = sub.add_parser("fleet", parents=[common], help="fewest GPUs for N videos an hour at a p95 wait")
    fleet.add_argument("--rates", default="60,250,500,1000,2000")
    fleet.add_argument("--wait-p95-s", type=float, default=60)
    fleet.add_argument("--size", default="512x512", choices=sorted(H100_MS_PER_STEP))
    fleet.add_argument("--steps", type=int, default=50)
    fleet.add_argument("--keys", type=int, default=10)
    fleet.add_argument("--compiled", action="store_true", help="torch.compile step times (512x512 only)")
    fleet.add_argument("--hours", type=float, default=4)
    burst = sub.add_parser("burst", parents=[common], help="the autoscaler against a burst")
    burst.add_argument("--rate", type=float, default=600, help="videos an hour before and after")
    burst.add_argument("--burst-x", type=float, default=3)
    burst.add_argument("--burst-min", type=float, default=20)
    burst.add_argument("--size", default="512x512", choices=sorted(H100_MS_PER_STEP))
    burst.add_argument("--steps", type=int, default=50)
    burst.add_argument("--keys", type=int, default=10)
    burst.add_argument("--workers-per-gateway", type=int, default=4)
    burst.add_argument("--pod-start-s", type=float, default=120)
    burst.add_argument("--rule", choices=("queue-wait", "backlog", "both"), default="queue-wait",
                       help="the shipped trigger, or jobs queued and running per GPU")
    burst.add_argument("--backlog-per-gpu", type=float, default=1.5)
    check = sub.add_parser("validate", parents=[common], help="predicted vs measured waits of a load_test.py report")
    check.add_argument("report", type=Path)
    args = parser.parse_args(argv)

    if args.command == "fleet":
        result: Any = fleet_table([float(r) for r in args.rates.split(",")], args.size, args.steps,
                                  args.wait_p95_s, args.keys, args.compiled, args.hours)
        print("| videos/hour | size | steps | s a video | GPUs | utilisation | p50 wait s | p95 wait s |")
        print("|---|---|---|---|---|---|---|---|")
        for row in result:
            print(f"| {row['videos_per_hour']:g} | {row['size']} | {row['steps']} | {row['service_s']} | {row['gpus']} "
                  f"| {row['utilisation']} | {row['wait_p50_s']} | {row['wait_p95_s']} |")
    elif args.command == "burst":
        service_s = service_time(args.size, args.steps, False)
        rates = {f"key{i}": args.rate / 3600 / args.keys for i in range(args.keys)}
        start, end = 3600.0, 3600.0 + args.burst_min * 60
        fleet_ = Fleet(autoscale=True, workers_per_gateway=args.workers_per_gateway, pod_start_s=args.pod_start_s,
                       rule=args.rule, backlog_per_gpu=args.backlog_per_gpu)
        result = simulate(rates, fleet_, service_s, MP4_ENCODE_S[args.size], duration_s=3 * 3600, warmup_s=0,
                          schedule=[(start, args.burst_x), (end, 1.0)])
        print(f"{args.rate:g} videos/hour, x{args.burst_x:g} for {args.burst_min:g} min from t=3600 s; "
              f"{service_s:.1f} s a video; workers {fleet_.gateways}x{fleet_.workers_per_gateway}; rule {args.rule}")
        print(json.dumps({k: v for k, v in result.items() if "timeline" not in k}))
        print("t s: GPUs, jobs queued: " + ", ".join(
            f"{t:.0f}: {g}, {q}" for (t, g), (_, q) in zip(result["gpu_timeline"], result["queue_timeline"],
                                                           strict=True) if 3000 <= t <= end + 3600 and t % 300 == 0))
    else:
        result = validate(args.report)
        print("| phase | jobs | service s | worker hold besides s | measured mean / p95 s | predicted mean / p95 s "
              "| load average |")
        print("|---|---|---|---|---|---|---|")
        for row in result:
            m, p = row["measured_store_wait_s"], row["predicted_store_wait_s"]
            print(f"| {row['phase']} | {row['jobs']} | {row['service_s']} | {row['gateway_hold_s']} | "
                  f"{m['mean']} / {m['p95']} | {p['mean']} / {p['p95']} | {row['loadavg']} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
