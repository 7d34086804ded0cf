"""Check a running Triton ``i2vgen_xl`` over gRPC: shapes, latency, batching, seeded repeatability.

    python scripts/triton_smoke.py --url 127.0.0.1:8011 --height 512 --width 512 --frames 16 --steps 10

Prints one line per check and PASS or FAIL; exits 0 or 1 (like Triton's example clients).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from gateway.generation.triton_inputs import MODEL_NAME, VideoRequest, build_inputs
from i2v_tools.sample_inputs import noise_png
from i2v_tools.triton_stats import model_counts, settled_counts


def infer_many(client: grpcclient.InferenceServerClient, requests: list[VideoRequest]) -> list:
    results: list = [None] * len(requests)
    pending = len(requests)

    def done(index: int):
        def callback(result, error):
            nonlocal pending
            results[index] = error if error is not None else result
            pending -= 1
        return callback

    for index, request in enumerate(requests):
        client.async_infer(MODEL_NAME, build_inputs(grpcclient, request), callback=done(index))
    while pending:
        time.sleep(0.01)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:8011")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    base = dict(image=noise_png(args.width, args.height), prompt="a boat on a lake", num_frames=args.frames,
                num_inference_steps=args.steps, height=args.height, width=args.width)
    client = grpcclient.InferenceServerClient(args.url)
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    ok = True

    infer_many(client, [VideoRequest(**base, seed=0)])  # warm-up
    started = time.perf_counter()
    [alone] = infer_many(client, [VideoRequest(**base, seed=1)])
    report["alone_s"] = round(time.perf_counter() - started, 3)
    frames = alone.as_numpy("FRAMES")
    shape_ok = frames.shape == (1, args.frames, args.height, args.width, 3) and frames.dtype == np.uint8
    ok &= shape_ok
    print(f"{'PASS' if shape_ok else 'FAIL'} shape {frames.shape} {frames.dtype}, alone {report['alone_s']} s")

    before = model_counts(client)
    requests = [VideoRequest(**base, seed=1 + i) for i in range(args.concurrency)]
    started = time.perf_counter()
    results = infer_many(client, requests)
    report["concurrent_s"] = round(time.perf_counter() - started, 3)
    after = settled_counts(client, before[0] + len(requests))
    report["requests"], report["executions"] = after[0] - before[0], after[1] - before[1]
    failures = [r for r in results if isinstance(r, Exception)]
    ok &= not failures
    print(f"{'FAIL' if failures else 'PASS'} {args.concurrency} concurrent in {report['concurrent_s']} s: "
          f"{report['requests']} requests, {report['executions']} executions {failures or ''}")
    if not failures:
        same = np.array_equal(results[0].as_numpy("FRAMES"), frames)
        difference = np.abs(results[0].as_numpy("FRAMES").astype(np.int16) - frames.astype(np.int16))
        report["seed_identical_alone_vs_batch"] = bool(same)
        report["seed_mean_abs_diff"] = round(float(difference.mean()), 4)
        print(f"INFO seed 1 alone vs with neighbours: identical={same}, mean abs diff {difference.mean():.4f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
