"""Full-size I2VGen-XL with random weights on a GPU: each speed option alone and the shipped default.

Compute does not depend on weight values, so the real architecture with random weights gives
honest timings and memory without the 4.6 GB download. For every shape and configuration the
same seeded request runs in-process through ``VideoGenerator``; the table has ms per denoising
step, achieved TFLOP/s of the UNet and its share of the card's peak, peak GPU memory, start to
ready (build + compile warm-up; for compiled rows also a second start on the warm cache folder),
and the frame difference against the plain run.

    python scripts/bench_gpu.py --json out.json                 # 512x512x16 and 1280x704x16, 10 steps
    python scripts/bench_gpu.py --shapes 512x512x16 --configs plain,torch.compile
    python scripts/bench_gpu.py --device cpu --tiny --steps 1 --shapes 64x64x8   # the test's smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from i2v_model import ModelSettings, VideoGenerator, build_request
from i2v_tools import REPO_ROOT
from i2v_tools.sample_inputs import noise_png
from i2v_tools.tiny_model import build_pipeline

# Dense fp16/bf16 tensor-core peak of an H100 SXM or H200 (TFLOP/s), without sparsity.
DEFAULT_PEAK_TFLOPS = 989.0
STEP_CACHE_INTERVAL = 2


def shipped_settings(device: str) -> ModelSettings:
    """The parameters the shipped config runs with: configs/gpu.pbtxt on a GPU, config.pbtxt on CPU."""
    folder = REPO_ROOT / "model_repository" / "i2vgen_xl"
    config = (folder / ("configs/gpu.pbtxt" if device.startswith("cuda") else "config.pbtxt")).read_text()
    parameters = dict(re.findall(r'\{ key: "(\w+)", value: \{ string_value: "([^"]*)" \} \}', config))
    parameters.update(model_path="in-memory", device=device, progress_model="")
    return ModelSettings.from_parameters(parameters, environ={})


def configurations(device: str, shape: tuple[int, int, int], cache_dir: Path) -> dict[str, ModelSettings]:
    """Plain (upstream's defaults: one frame a decode), each option alone, and the shipped default."""
    dtype = "float16" if device.startswith("cuda") else "float32"
    plain = ModelSettings(model_path="in-memory", device=device, dtype=dtype, decode_chunk_size="1",
                          progress_model="")
    bucket = "x".join(map(str, shape))
    shipped = shipped_settings(device)
    if shipped.torch_compile:
        # Compile this benchmark's shape into its own cache folder, as the shipped config would.
        shipped = dataclasses.replace(shipped, compile_buckets=bucket, compile_cache_dir=str(cache_dir / "shipped"))
    return {
        "plain": plain,
        "decode in one chunk": dataclasses.replace(plain, decode_chunk_size="auto"),
        "torch.compile": dataclasses.replace(plain, torch_compile=True, compile_buckets=bucket,
                                             compile_cache_dir=str(cache_dir / "compile")),
        "channels-last": dataclasses.replace(plain, channels_last=True),
        f"step caching every {STEP_CACHE_INTERVAL} steps": dataclasses.replace(
            plain, step_cache_interval=STEP_CACHE_INTERVAL),
        "shipped default": shipped,
    }


def build_on(device: str, size: str):
    import torch

    # Parameters are created (and randomly initialised, seeded) directly on the device.
    with torch.device(device):
        return build_pipeline(size)


def start(settings: ModelSettings, size: str) -> tuple[VideoGenerator, float]:
    """Build (random weights stand in for a load) and wrap; the compile warm-up runs here."""
    started = time.perf_counter()
    generator = VideoGenerator.from_pipeline(build_on(settings.device, size), settings)
    return generator, time.perf_counter() - started


def unet_tflop(generator: VideoGenerator, request) -> float:
    """FLOPs of one UNet call (the CFG pair) at the request's shape, counted on an eager call."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet = generator.pipeline.unet
    captured: dict = {}

    def capture(module, args, kwargs):
        captured.setdefault("call", (args, kwargs))

    handle = unet.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        generator.generate([dataclasses.replace(request, num_inference_steps=1)])
    finally:
        handle.remove()
    args, kwargs = captured["call"]
    counter = FlopCounterMode(display=False)
    forward = getattr(unet.forward, "eager_forward", unet.forward)
    with torch.inference_mode(), counter:
        forward(*args, **kwargs)
    return counter.get_total_flops() / 1e12


def measure(name: str, settings: ModelSettings, shape: tuple[int, int, int], args: argparse.Namespace) -> dict:
    import torch

    cuda = settings.device.startswith("cuda")
    width, height, frames = shape
    generator, start_s = start(settings, args.size)
    row: dict = {"shape": f"{width}x{height}x{frames}", "config": name, "start_s": round(start_s, 2),
                 "warm_start_s": None}
    if settings.torch_compile and settings.compile_cache_dir:
        # A second start on the same cache folder, with dynamo's in-memory state dropped.
        del generator
        torch._dynamo.reset()
        generator, warm_s = start(settings, args.size)
        row["warm_start_s"] = round(warm_s, 2)
    request = build_request(settings, image=noise_png(width, height), prompt="a boat on a lake",
                            negative_prompt=None, num_frames=frames, num_inference_steps=args.steps,
                            guidance_scale=9.0, height=height, width=width, seed=1234)
    generator.generate([dataclasses.replace(request, num_inference_steps=1)])  # kernels, cuDNN autotuning
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
    row.update({
        "total_s": round(total_s, 3),
        # The first step also encodes the prompt and image; the median of the rest is the UNet's pace.
        "step_ms_median": round(float(np.median(steps[1:] if len(steps) > 1 else steps)) * 1000, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "error": None if result.error is None else str(result.error),
    })
    if name == "plain":
        row["unet_tflop"] = float(f"{unet_tflop(generator, request):.4g}")
    del generator
    if cuda:
        torch.cuda.empty_cache()
    return {**row, "_frames": result.frames}


def parse_shape(text: str) -> tuple[int, int, int]:
    width, height, frames = (int(part) for part in text.lower().split("x"))
    return width, height, frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--tiny", dest="size", action="store_const", const="tiny", help="same as --size tiny")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shapes", default="512x512x16,1280x704x16", help="WIDTHxHEIGHTxFRAMES, comma-separated")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--configs", help="comma-separated names to run (default: all); plain always runs")
    parser.add_argument("--peak-tflops", type=float, default=DEFAULT_PEAK_TFLOPS,
                        help="the card's dense fp16 peak, for the share-of-peak column")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)

    import torch

    cuda = args.device.startswith("cuda")
    machine = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"I2VGen-XL {args.size}, {machine}, torch {torch.__version__}: {args.steps} steps, guidance 9.0, batch 1")
    wanted = None if not args.configs else {"plain", *(c.strip() for c in args.configs.split(","))}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-cache-") as cache_dir:
        for shape in (parse_shape(s) for s in args.shapes.split(",")):
            reference = flop = None
            for name, settings in configurations(args.device, shape, Path(cache_dir)).items():
                if wanted is not None and name not in wanted:
                    continue
                row = measure(name, settings, shape, args)
                frames = row.pop("_frames")
                flop = row.pop("unet_tflop", flop)
                reference = frames if reference is None else reference
                row["vs_plain_mean_abs"] = row["vs_plain_max_abs"] = None
                if frames is not None and reference is not None:
                    difference = np.abs(frames.astype(np.int16) - reference.astype(np.int16))
                    row["vs_plain_mean_abs"] = round(float(difference.mean()), 3)
                    row["vs_plain_max_abs"] = int(difference.max())
                # For step caching this is the effective rate: the plain UNet's work per step.
                row["unet_tflop"] = flop
                row["tflops"] = float(f"{flop / (row['step_ms_median'] / 1000):.4g}") if flop else None
                row["share_of_peak"] = round(row["tflops"] / args.peak_tflops, 3) if cuda and row["tflops"] else None
                rows.append(row)
                print(json.dumps(row), flush=True)

    columns = ["shape", "config", "step_ms_median", "tflops", "share_of_peak", "peak_gib", "start_s",
               "warm_start_s", "vs_plain_mean_abs", "vs_plain_max_abs", "error"]
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join("" if row.get(c) is None else str(row[c]) for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "torch": torch.__version__,
                                         "args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
