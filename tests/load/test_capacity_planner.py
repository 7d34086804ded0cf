"""The capacity planner's model against queueing theory and the rules it copies (pure simulation,
a second or two)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from i2v_tools import REPO_ROOT

_spec = importlib.util.spec_from_file_location("capacity_planner", REPO_ROOT / "scripts" / "capacity_planner.py")
planner = importlib.util.module_from_spec(_spec)
sys.modules["capacity_planner"] = planner  # its dataclasses look their module up
_spec.loader.exec_module(planner)


def test_one_gpu_waits_as_pollaczek_khinchine_says():
    # M/D/1: Poisson arrivals, a fixed 10 s a video, 70% busy: mean wait rho*S / (2 (1 - rho)) = 11.67 s.
    fleet = planner.Fleet(gpus=1, max_queued_per_key=10**6, max_queued_total=10**7)
    result = planner.simulate({"a": 0.07}, fleet, service_s=10.0, duration_s=400_000, warmup_s=2000, cv=0)
    assert result["wait_s"]["mean"] == pytest.approx(0.7 * 10 / (2 * 0.3), rel=0.1)


def test_fair_queue_serves_a_quiet_key_first_while_another_floods():
    # One GPU, 10 s a video: the flood asks for twice what it can do, the quiet key for a tenth.
    fleet = planner.Fleet(gpus=1, gateways=1, workers_per_gateway=1, max_queued_per_key=20)
    result = planner.simulate({"flood": 0.2, "quiet": 0.01}, fleet, service_s=10.0, duration_s=20_000,
                              warmup_s=0, cv=0)
    waits = result["wait_s_mean_by_key"]
    assert result["refused"] > 0
    # In turn: the rest of the running video and at most one flood video ahead, against a full line.
    assert waits["quiet"] <= 2 * 10 < 100 < waits["flood"], waits


def test_the_autoscaler_adds_gpus_when_the_triton_queue_waits():
    fleet = planner.Fleet(autoscale=True, min_gpus=1, max_gpus=8, pod_start_s=60)
    result = planner.simulate({"a": 0.2}, fleet, service_s=10.0, duration_s=3600, warmup_s=0)
    assert result["gpus_max"] >= 2
    assert result["wait_s"]["p50"] < 60  # it caught up


def test_queue_wait_alone_oscillates_and_the_backlog_trigger_holds_it():
    # 600 videos an hour of 12.5 s each (about 2 GPUs of work) on 1-8 pods, the shipped KEDA
    # settings: on Triton's queue wait alone HPA's rule sheds pods while nothing waits, down to one,
    # then climbs back through a wave of waits; with the backlog trigger beside it the pods follow the work.
    rates = {f"key{i}": 600 / 3600 / 10 for i in range(10)}
    results = {}
    for rule in ("queue-wait", "both"):
        fleet = planner.Fleet(autoscale=True, rule=rule)
        results[rule] = planner.simulate(rates, fleet, service_s=12.5, encode_s=0.3, duration_s=3 * 3600, warmup_s=0)
    fewest = {rule: min(g for t, g in result["gpu_timeline"] if t > 3600) for rule, result in results.items()}
    assert fewest["queue-wait"] == 1 and fewest["both"] >= 3, fewest
    assert results["both"]["wait_s"]["p95"] * 3 < results["queue-wait"]["wait_s"]["p95"], results
