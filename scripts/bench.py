"""What serving adds on top of the model, and what batching buys: one run, one machine, side by side.

    python scripts/bench.py                 # quick mode, a few minutes on 2 CPU cores
    python scripts/bench.py --mode full     # more repeats, 8 clients, 200 requests for memory

Sections: the raw pipeline in-process (the floor) with MP4 encoding timed apart; the same
requests through Triton over gRPC and HTTP; through the gateway's POST /api/v1/generate; the
naive design that loads the pipeline inside every request; a concurrency sweep with dynamic
batching in three model configurations; cold start; resident memory before and after many
requests; MP4 encoding speed. Prints tables and writes JSON (bench-results/ by default).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from gateway.generation.triton_inputs import MODEL_NAME, VideoRequest, build_inputs
from i2v_tools import REPO_ROOT
from i2v_tools.sample_inputs import noise_png
from i2v_tools.servers import GatewayServer, TritonServer, rss_mib
from i2v_tools.tiny_model import TINY_MODEL, build_and_save
from i2v_tools.triton_stats import model_counts, settled_counts

TOKEN = "bench-token-0123456789"


@dataclass(frozen=True)
class Workload:
    size: int
    frames: int
    steps: int

    def label(self) -> str:
        return f"{self.size}x{self.size}, {self.frames} frames, {self.steps} steps"


MODES = {
    # realistic: model time dominates, as on a GPU; small: where batched calls pay on a CPU.
    "quick": dict(realistic=Workload(256, 16, 4), small=Workload(64, 8, 2), repeats=5, clients=(1, 2, 4),
                  sweep_requests=12, memory_requests=200),
    "full": dict(realistic=Workload(256, 16, 8), small=Workload(64, 8, 2), repeats=9, clients=(1, 2, 4, 8),
                 sweep_requests=24, memory_requests=500),
}


def timed(function: Callable[[], object], repeats: int) -> list[float]:
    """Times of ``repeats`` calls after one warm-up call."""
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"mean_s": round(statistics.fmean(times), 4), "p50_s": round(ordered[len(ordered) // 2], 4),
            "p95_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 4), "n": len(times)}


def stub_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"triton_python_backend_stub" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def model_repository_variant(root: Path, batch_invariant: bool, dynamic_batching: bool) -> Path:
    """A copy of the model repository whose config differs only in the batching settings."""
    config = (REPO_ROOT / "model_repository" / "i2vgen_xl" / "config.pbtxt").read_text()
    config = config.replace('key: "batch_invariant", value: { string_value: "true" }',
                            f'key: "batch_invariant", value: {{ string_value: "{str(batch_invariant).lower()}" }}')
    if not dynamic_batching:
        start = config.index("dynamic_batching {")
        depth, end = 0, start
        for end in range(start, len(config)):
            depth += {"{": 1, "}": -1}.get(config[end], 0)
            if depth == 0 and config[end] == "}":
                break
        config = config[:start] + config[end + 1:]
    name = f"bi-{batch_invariant}-db-{dynamic_batching}"
    model_dir = root / name / "i2vgen_xl"
    model_dir.mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(config)
    (model_dir / "1").symlink_to(REPO_ROOT / "model_repository" / "i2vgen_xl" / "1")
    return root / name


class Bench:
    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.settings = MODES[mode]
        self.workdir = workdir
        self.results: dict = {"mode": mode, "machine": {"cpus": os.cpu_count()}}

    # --- 1 to 4: one request at a time, every path interleaved round by round ----------------
    def per_request(self) -> None:
        """Raw pipeline (+ encode), Triton gRPC and HTTP, the gateway and the naive design.

        The paths take turns within each round, so slow drift of the machine (frequency,
        neighbours) lands on all of them alike; medians are compared."""
        import httpx
        import tritonclient.grpc as grpcclient

        from gateway.generation.video import encode_mp4
        from i2v_model import ModelSettings, VideoGenerator, build_request

        work: Workload = self.settings["realistic"]
        settings = ModelSettings(model_path=str(TINY_MODEL))
        image = noise_png(work.size, work.size)
        started = time.perf_counter()
        generator = VideoGenerator.load(settings)
        load_s = time.perf_counter() - started

        def pipeline_request():
            return build_request(settings, image=image, prompt="a boat on a lake", negative_prompt=None,
                                 num_frames=work.frames, num_inference_steps=work.steps, guidance_scale=9.0,
                                 height=work.size, width=work.size, seed=1)

        frames = generator.generate([pipeline_request()])[0].frames
        triton_request = VideoRequest(image=image, prompt="a boat on a lake", num_frames=work.frames,
                                      num_inference_steps=work.steps, height=work.size, width=work.size, seed=1)
        body = {"image_base64": base64.b64encode(image).decode(), "prompt": "a boat on a lake",
                "resolution": f"{work.size}p", "num_frames": work.frames, "steps": work.steps, "seed": 1}

        triton = TritonServer(self.workdir / "triton-default", {"I2V_MODEL_PATH": str(TINY_MODEL)})
        started = time.perf_counter()
        triton.start().wait_ready()
        cold_start = time.perf_counter() - started
        # Limits off: the benchmark is the only caller and sends hundreds of requests.
        # The result cache is off too: these rounds repeat one seed and must reach the model.
        gateway = GatewayServer(self.workdir / "gateway", triton.grpc_url, TOKEN,
                                {"I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_MAX_CONCURRENT_PER_KEY": "0",
                                 "I2V_CACHE_MAX_BYTES": "0"}).start().wait_healthy()
        try:
            grpc = grpcclient.InferenceServerClient(triton.grpc_url)
            http = httpclient.InferenceServerClient(triton.http_url, network_timeout=600)
            with httpx.Client(base_url=gateway.url, timeout=600,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                def via_gateway():
                    api.post("/api/v1/generate", json=body).raise_for_status()

                def naive():
                    # The original design: load the pipeline inside every request.
                    VideoGenerator.load(settings).generate([pipeline_request()])
                    encode_mp4(frames, 8, self.workdir / "naive.mp4")

                paths: dict[str, Callable[[], object]] = {
                    "raw_pipeline": lambda: generator.generate([pipeline_request()]),
                    "mp4_encode": lambda: encode_mp4(frames, 8, self.workdir / "bench.mp4"),
                    "triton_grpc": lambda: grpc.infer(MODEL_NAME, build_inputs(grpcclient, triton_request)),
                    "triton_http": lambda: http.infer(MODEL_NAME, build_inputs(httpclient, triton_request)),
                    "gateway_generate": via_gateway,
                    "naive_per_request_load": naive,
                }
                times: dict[str, list[float]] = {name: [] for name in paths}
                for round_index in range(self.settings["repeats"] + 1):
                    for name, function in paths.items():
                        started = time.perf_counter()
                        function()
                        if round_index:  # round 0 warms every path up
                            times[name].append(time.perf_counter() - started)
                self.results["per_request"] = {"workload": work.label(), "in_process_load_s": round(load_s, 3),
                                               "triton_cold_start_s": round(cold_start, 2),
                                               **{name: summary(values) for name, values in times.items()}}
                self.memory(api, gateway)
        finally:
            gateway.stop()
            triton.stop()

    def memory(self, api, gateway: GatewayServer) -> None:
        body = {"image_base64": base64.b64encode(noise_png(256, 256)).decode(), "prompt": "memory",
                "resolution": "256p", "num_frames": 8, "steps": 1}
        for seed in range(5):  # allocator pools settle during the first requests
            api.post("/api/v1/generate", json={**body, "seed": seed}).raise_for_status()
        stubs = stub_pids()
        gateway_pid = gateway.process.pid if gateway.process else 0
        before = {"stub_mib": round(sum(rss_mib(p) for p in stubs), 1), "gateway_mib": round(rss_mib(gateway_pid), 1)}
        for seed in range(self.settings["memory_requests"]):
            api.post("/api/v1/generate", json={**body, "seed": seed}).raise_for_status()
        after = {"stub_mib": round(sum(rss_mib(p) for p in stubs), 1), "gateway_mib": round(rss_mib(gateway_pid), 1)}
        self.results["memory"] = {"requests": self.settings["memory_requests"], "workload": "256x256, 8 frames, 1 step",
                                  "before": before, "after": after}

    # --- result cache: a seeded repeat against its first, uncached request --------------------
    def cache(self) -> None:
        import httpx
        import tritonclient.http as httpclient

        work: Workload = self.settings["realistic"]
        body = {"image_base64": base64.b64encode(noise_png(work.size, work.size)).decode(), "prompt": "a lighthouse",
                "resolution": f"{work.size}p", "num_frames": work.frames, "steps": work.steps}
        triton = TritonServer(self.workdir / "triton-cache", {"I2V_MODEL_PATH": str(TINY_MODEL)}).start().wait_ready()
        gateway = GatewayServer(self.workdir / "gateway-cache", triton.grpc_url, TOKEN,
                                {"I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_MAX_CONCURRENT_PER_KEY": "0"}
                                ).start().wait_healthy()
        try:
            stats = httpclient.InferenceServerClient(triton.http_url)
            with httpx.Client(base_url=gateway.url, timeout=600,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                first, repeat = [], []
                for seed in range(self.settings["repeats"]):
                    for into in (first, repeat):  # a new seed misses, then the same seed hits
                        started = time.perf_counter()
                        answer = api.post("/api/v1/generate", json={**body, "seed": 1000 + seed})
                        answer.raise_for_status()
                        into.append(time.perf_counter() - started)
                        assert answer.json()["cached"] is (into is repeat)
                requests = settled_counts(stats, len(first))[0]
                time.sleep(0.5)
                assert model_counts(stats)[0] == requests == len(first), "a cached repeat reached Triton"
        finally:
            gateway.stop()
            triton.stop()
        self.results["cache"] = {"workload": work.label(), "first": summary(first), "repeat": summary(repeat),
                                 "triton_requests": requests}

    # --- 5: concurrency sweep -----------------------------------------------------------
    def sweep(self) -> None:
        variants = [("dynamic batching, batched calls", False, True),
                    ("dynamic batching, one call per request (default)", True, True),
                    ("no dynamic batching", True, False)]
        rows = []
        for workload_name in ("small", "realistic"):
            work: Workload = self.settings[workload_name]
            # Quick mode leaves out the slowest contrast at the realistic size.
            variants_here = variants[:2] if workload_name == "realistic" and self.mode == "quick" else variants
            image = noise_png(work.size, work.size)
            for label, invariant, dynamic in variants_here:
                repository = model_repository_variant(self.workdir / "repos" / workload_name, invariant, dynamic)
                triton = TritonServer(self.workdir / f"triton-{workload_name}-{repository.name}",
                                      {"I2V_MODEL_PATH": str(TINY_MODEL), "TRITON_MODEL_REPOSITORY": str(repository)})
                triton.start().wait_ready()
                try:
                    for clients in self.settings["clients"]:
                        rows.append({"workload": work.label(), "config": label, "clients": clients,
                                     **self.closed_loop(triton, clients, work, image)})
                        print(json.dumps(rows[-1]), flush=True)
                finally:
                    triton.stop()
        self.results["sweep"] = rows

    def closed_loop(self, triton: TritonServer, clients: int, work: Workload, image: bytes) -> dict:
        total = max(self.settings["sweep_requests"], clients * 2)
        latencies: list[float] = []
        lock = threading.Lock()
        remaining = [total]

        def client_loop(index: int) -> None:
            client = grpcclient.InferenceServerClient(triton.grpc_url)
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                    seed = remaining[0]
                request = VideoRequest(image=image, prompt="sweep", num_frames=work.frames,
                                        num_inference_steps=work.steps, height=work.size, width=work.size, seed=seed)
                started = time.perf_counter()
                client.infer(MODEL_NAME, build_inputs(grpcclient, request))
                with lock:
                    latencies.append(time.perf_counter() - started)

        stats = grpcclient.InferenceServerClient(triton.grpc_url)
        warm = VideoRequest(image=image, prompt="warm", num_frames=work.frames, num_inference_steps=work.steps,
                             height=work.size, width=work.size, seed=0)
        for _ in range(2):
            stats.infer(MODEL_NAME, build_inputs(grpcclient, warm))
        before_requests, before_executions = model_counts(stats)
        started = time.perf_counter()
        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        executions = settled_counts(stats, before_requests + total)[1] - before_executions
        ordered = sorted(latencies)
        return {"requests": total, "throughput_rps": round(total / wall, 3),
                "p50_s": round(ordered[len(ordered) // 2], 3), "p95_s": round(ordered[int(len(ordered) * 0.95)], 3),
                "executions_per_request": round(executions / total, 3)}

    # --- 6: MP4 encoding speed --------------------------------------------------------------
    def encoding(self) -> None:
        from gateway.generation.video import encode_mp4

        rows = {}
        for label, (width, height) in {"512p (512x512)": (512, 512), "1024p (1024x576)": (1024, 576)}.items():
            frames = np.random.default_rng(0).integers(0, 255, (16, height, width, 3), dtype=np.uint8)
            times = timed(lambda f=frames: encode_mp4(f, 8, self.workdir / "encode.mp4"), 3)
            rows[label] = {"frames": 16, "mean_s": round(statistics.fmean(times), 4),
                           "frames_per_s": round(16 / statistics.fmean(times), 1)}
        self.results["mp4_encode_speed"] = rows

    def report(self) -> str:
        """Markdown tables for the sections that ran."""
        r = self.results
        lines = [f"# bench.py --mode {self.mode} ({r['machine']['cpus']} CPUs)", ""]
        if "per_request" in r:
            lines += self._per_request_report(r["per_request"])
        if "cache" in r:
            lines += self._cache_report(r["cache"])
        if "sweep" in r:
            lines += self._sweep_report(r["sweep"])
        if "memory" in r:
            lines += self._memory_report(r["per_request"], r["memory"])
        if "mp4_encode_speed" in r:
            lines += ["## MP4 encoding (H.264, yuv420p, 16 frames)", "", "| size | s | frames/s |", "|---|---|---|"]
            for label, row in r["mp4_encode_speed"].items():
                lines.append(f"| {label} | {row['mean_s']} | {row['frames_per_s']} |")
        return "\n".join(lines)

    @staticmethod
    def _per_request_report(pr: dict) -> list[str]:
        floor = pr["raw_pipeline"]["p50_s"] + pr["mp4_encode"]["p50_s"]
        gateway = pr["gateway_generate"]["p50_s"]
        lines = [f"## Per request, {pr['workload']} (median of {pr['raw_pipeline']['n']} interleaved rounds)", "",
                 "| path | median s | vs raw pipeline + encode |", "|---|---|---|"]
        for label, value in (("raw pipeline in-process", pr["raw_pipeline"]["p50_s"]),
                             ("MP4 encode alone", pr["mp4_encode"]["p50_s"]),
                             ("raw pipeline + encode (floor)", floor),
                             ("Triton gRPC (frames, no MP4)", pr["triton_grpc"]["p50_s"]),
                             ("Triton HTTP (frames, no MP4)", pr["triton_http"]["p50_s"]),
                             ("gateway POST /api/v1/generate (MP4)", gateway),
                             ("naive: load pipeline per request", pr["naive_per_request_load"]["p50_s"])):
            lines.append(f"| {label} | {value:.3f} | {value / floor:.3f}x ({(value - floor) * 1000:+.0f} ms) |")
        return lines + ["", f"Gateway over the floor: {(gateway / floor - 1) * 100:+.1f}% "
                            f"({(gateway - floor) * 1000:+.0f} ms). Naive design / gateway: "
                            f"{pr['naive_per_request_load']['p50_s'] / gateway:.2f}x.", ""]

    @staticmethod
    def _cache_report(cache: dict) -> list[str]:
        return [f"## Result cache, {cache['workload']} (gateway, seeded, median of {cache['first']['n']})", "",
                "| request | median s |", "|---|---|",
                f"| first (model) | {cache['first']['p50_s']:.3f} |",
                f"| repeat (cache) | {cache['repeat']['p50_s']:.3f} |", "",
                f"A cached repeat is {cache['first']['p50_s'] / cache['repeat']['p50_s']:.0f}x faster; Triton saw "
                f"{cache['triton_requests']} requests for {2 * cache['first']['n']} calls.", ""]

    @staticmethod
    def _sweep_report(sweep: list[dict]) -> list[str]:
        lines = ["## Concurrency sweep (gRPC, closed loop)", "",
                 "| workload | config | clients | req/s | p50 s | p95 s | executions/request | vs 1 client |",
                 "|---|---|---|---|---|---|---|---|"]
        base: dict = {}
        for row in sweep:
            key = (row["workload"], row["config"])
            base.setdefault(key, row["throughput_rps"])
            lines.append(f"| {row['workload']} | {row['config']} | {row['clients']} | {row['throughput_rps']} | "
                         f"{row['p50_s']} | {row['p95_s']} | {row['executions_per_request']} | "
                         f"{row['throughput_rps'] / base[key]:.2f}x |")
        return lines

    @staticmethod
    def _memory_report(pr: dict, memory: dict) -> list[str]:
        return ["", "## Cold start and memory", "",
                f"Triton launch to model ready: {pr['triton_cold_start_s']} s. In-process pipeline load: "
                f"{pr['in_process_load_s']} s.", "",
                "| process | RSS before MiB | RSS after MiB |", "|---|---|---|",
                f"| Triton Python stub | {memory['before']['stub_mib']} | {memory['after']['stub_mib']} |",
                f"| gateway | {memory['before']['gateway_mib']} | {memory['after']['gateway_mib']} |",
                "", f"({memory['requests']} gateway requests, {memory['workload']}, between the two readings)", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=tuple(MODES), default="quick")
    parser.add_argument("--json", type=Path, help="default bench-results/bench-<mode>.json")
    parser.add_argument("--only", choices=("per_request", "cache", "sweep", "encoding"), action="append",
                        help="run some sections only")
    args = parser.parse_args(argv)
    build_and_save(TINY_MODEL)
    with tempfile.TemporaryDirectory(prefix="i2v-bench-") as workdir:
        bench = Bench(args.mode, Path(workdir))
        for section in args.only or ("per_request", "cache", "sweep", "encoding"):
            started = time.perf_counter()
            getattr(bench, section)()
            print(f"# {section} done in {time.perf_counter() - started:.0f} s", flush=True)
        output = args.json or REPO_ROOT / "bench-results" / f"bench-{args.mode}.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(bench.results, indent=2))
        print(bench.report())
        print(f"\nJSON: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
