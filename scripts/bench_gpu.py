"""Full-size I2VGen-XL with random weights on a GPU: latency, memory, plain vs optimised.

Compute does not depend on weight values, so the real architecture with random weights
gives honest timings and memory without the 4.6 GB download. Every configuration runs the
same seeded request and its frames are compared with the plain fp16 run.

    python scripts/bench_gpu.py                       # full size, 512x512, 16 frames, 10 steps
    python scripts/bench_gpu.py --height 704 --width 1280 --steps 10 --compile --json out.json
    python scripts/bench_gpu.py --size tiny --device cpu   # a smoke run of this script anywhere
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from i2v_model import ModelSettings, VideoGenerator, build_request
from i2v_tools.sample_inputs import noise_png
from i2v_tools.tiny_model import build_pipeline


def configurations(device: str, compile_unet: bool) -> dict[str, ModelSettings]:
    base = ModelSettings(model_path="in-memory", device=device, dtype="float16" if device != "cpu" else "float32",
                         batch_invariant=False)
    configs = {
        "plain fp16": base,
        "channels-last + VAE tiling": dataclasses.replace(base, channels_last=True, vae_tiling=True),
        "one call per request (batch_invariant)": dataclasses.replace(base, batch_invariant=True),
    }
    if compile_unet:
        configs["channels-last + VAE tiling + torch.compile"] = dataclasses.replace(
            base, channels_last=True, vae_tiling=True, torch_compile=True)
    return configs


def build_on(device: str, size: str):
    import torch

    # Parameters are created (and randomly initialised, seeded) directly on the device.
    with torch.device(device):
        return build_pipeline(size)


def measure(name: str, settings: ModelSettings, args: argparse.Namespace) -> dict:
    import torch

    cuda = settings.device.startswith("cuda")
    started = time.perf_counter()
    generator = VideoGenerator.from_pipeline(build_on(settings.device, args.size), settings)
    build_s = time.perf_counter() - started
    request = build_request(settings, image=noise_png(args.width, args.height), prompt="a boat on a lake",
                            negative_prompt=None, num_frames=args.frames, num_inference_steps=args.steps,
                            guidance_scale=9.0, height=args.height, width=args.width, seed=1234)
    warm = dataclasses.replace(request, num_inference_steps=1)
    warm_started = time.perf_counter()
    generator.generate([warm])  # kernels, cuDNN autotuning and torch.compile happen here
    warmup_s = time.perf_counter() - warm_started
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    step_times: list[float] = []
    started = time.perf_counter()
    [result] = generator.generate([request], on_step=lambda *_: step_times.append(time.perf_counter()))
    if cuda:
        torch.cuda.synchronize()
    total_s = time.perf_counter() - started
    steps = np.diff([started, *step_times])
    row = {
        "config": name, "build_s": round(build_s, 2), "warmup_s": round(warmup_s, 2), "total_s": round(total_s, 3),
        "step_ms_median": round(float(np.median(steps[1:] if len(steps) > 1 else steps)) * 1000, 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "error": None if result.error is None else str(result.error),
    }
    if args.invariance and settings.batch_invariant:
        neighbour = dataclasses.replace(request, seed=99, prompt="a storm")
        batch = generator.generate([neighbour, request])
        row["bit_identical_in_batch"] = bool(result.frames is not None and batch[1].frames is not None
                                             and np.array_equal(result.frames, batch[1].frames))
    del generator
    if cuda:
        torch.cuda.empty_cache()
    return {**row, "_frames": result.frames}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the UNet")
    parser.add_argument("--no-invariance", dest="invariance", action="store_false",
                        help="skip the alone-vs-batch comparison")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)

    import torch

    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"I2VGen-XL {args.size}, {machine}, torch {torch.__version__}: {args.width}x{args.height}, "
          f"{args.frames} frames, {args.steps} steps, guidance 9.0, batch 1")
    rows = []
    reference = None
    for name, settings in configurations(args.device, args.compile).items():
        row = measure(name, settings, args)
        frames = row.pop("_frames")
        if reference is None:
            reference = frames
        if frames is not None and reference is not None:
            difference = np.abs(frames.astype(np.int16) - reference.astype(np.int16))
            row["vs_plain_mean_abs"] = round(float(difference.mean()), 3)
            row["vs_plain_max_abs"] = int(difference.max())
        rows.append(row)
        print(json.dumps(row), flush=True)

    columns = ["config", "total_s", "step_ms_median", "peak_gib", "warmup_s", "vs_plain_mean_abs",
               "vs_plain_max_abs", "bit_identical_in_batch", "error"]
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": vars(args) | {"json": str(args.json)},
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
