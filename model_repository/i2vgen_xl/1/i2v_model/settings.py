"""Model tunables: Triton config ``parameters`` (all strings there) parsed once and validated."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DTYPES = ("float32", "float16", "bfloat16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_BUCKET = re.compile(r"(\d+)x(\d+)x(\d+)")


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_parameters(cls: type, parameters: dict[str, str]) -> dict[str, Any]:
    """Type string ``parameters`` by the fields of the dataclass ``cls``; refuse unknown names."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"unknown model parameters: {', '.join(unknown)}")
    parsers = {"bool": _parse_bool, "int": int, "float": float, "str": str}
    values: dict[str, Any] = {}
    for name, raw in parameters.items():
        try:
            values[name] = parsers[known[name].type](raw)
        except ValueError as exc:
            raise ValueError(f"model parameter {name}: {exc}") from None
    return values


@dataclass(frozen=True)
class ModelSettings:
    """Tunables of the ``i2vgen_xl`` model."""

    model_path: str = ""
    variant: str = ""  # e.g. "fp16": load the hub's half-precision files
    device: str = "cpu"
    dtype: str = "float32"
    max_num_frames: int = 64
    max_inference_steps: int = 150
    max_pixels: int = 1280 * 1280  # of the output video (HEIGHT x WIDTH)
    # The work of one request, HEIGHT x WIDTH x NUM_FRAMES x NUM_INFERENCE_STEPS: legal inputs
    # each within their ranges can still multiply to hours of the instance (1280x1280, 64 frames,
    # 150 steps). Default: the gateway's largest request (768x768, 32 frames, 150 steps).
    max_work: int = 768 * 768 * 32 * 150
    # What a direct caller may send, checked before anything is decoded; the gateway's limits
    # (I2V_MAX_IMAGE_BYTES, I2V_MAX_IMAGE_PIXELS, I2V_MAX_PROMPT_CHARS) are the defaults.
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000  # of the input image, from its header
    max_prompt_chars: int = 2000  # PROMPT and NEGATIVE_PROMPT each
    # True: each request of a group runs as its own pipeline call, so its frames cannot depend
    # on its neighbours. False: one batched call per group (faster on CPU for small videos),
    # where ATen's vectorised element-wise kernels make a seeded item differ by rounding.
    batch_invariant: bool = True
    vae_tiling: bool = False  # decode in overlapping tiles: less memory at high resolution
    channels_last: bool = False
    torch_compile: bool = False
    # torch.compile's mode ("default", "reduce-overhead" = CUDA graphs, "max-autotune", ...) and
    # backend: "inductor" generates kernels (and is what the cache folder keeps); "eager" only
    # captures graphs (dynamo), which the CPU tests use because inductor's C++ build of every
    # kernel takes many minutes on a few busy cores. ("aot_eager" fails on this UNet's
    # non-contiguous GroupNorm input in torch 2.13.)
    compile_mode: str = "default"
    compile_backend: str = "inductor"
    # Where compiled kernels persist across restarts: inductor's cache and PyTorch's portable
    # cache artifacts (relative to the model folder, or absolute; empty: inductor's default).
    compile_cache_dir: str = ""
    # Shapes compiled and warmed up at load, "WIDTHxHEIGHTxFRAMES" comma-separated; any other
    # shape runs eagerly, so no request ever waits for a compile. Empty: nothing is compiled.
    compile_buckets: str = ""
    # Frames the VAE decodes at once: a positive integer, or "auto" (from free CUDA memory on
    # a GPU, AUTO_CPU_DECODE_CHUNK on CPU). Frames decode independently, so only speed and
    # memory change.
    decode_chunk_size: str = "auto"
    # DeepCache-style step caching: compute the deep UNet blocks every N steps and reuse their
    # output in between (0 or 1: off). The default for requests that send no STEP_CACHE_INTERVAL.
    step_cache_interval: int = 0
    cpu_threads: int = 0
    # The decoupled model in the same Triton server that per-step progress is reported to
    # (see progress.py); empty: no progress reports.
    progress_model: str = "i2vgen_xl_progress"

    @classmethod
    def from_parameters(cls, parameters: dict[str, str], environ: dict[str, str] | None = None,
                        base_dir: Path | None = None) -> ModelSettings:
        """Build settings from string parameters; ``I2V_MODEL_PATH`` overrides ``model_path``.

        A relative ``model_path`` is resolved against ``base_dir`` (the model's folder in
        the repository) when it exists there; otherwise it is kept as a hub id.
        """
        environ = dict(os.environ) if environ is None else environ
        values = parse_parameters(cls, parameters)
        if environ.get("I2V_MODEL_PATH"):
            values["model_path"] = environ["I2V_MODEL_PATH"]
        settings = cls(**values)
        if base_dir is not None and settings.model_path and not Path(settings.model_path).is_absolute():
            candidate = (base_dir / settings.model_path).resolve()
            if candidate.exists():
                values["model_path"] = str(candidate)
                settings = cls(**values)
        if base_dir is not None and settings.compile_cache_dir and not Path(settings.compile_cache_dir).is_absolute():
            # Created on first use, so it is resolved whether or not it exists yet.
            settings = cls(**{**values, "compile_cache_dir": str((base_dir / settings.compile_cache_dir).resolve())})
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.model_path:
            raise ValueError("model_path is empty: set the model parameter or I2V_MODEL_PATH")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, not {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', not {self.device!r}")
        for name in ("max_num_frames", "max_inference_steps", "max_pixels", "max_work", "max_image_bytes",
                     "max_image_pixels", "max_prompt_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.step_cache_interval < 0:
            raise ValueError("step_cache_interval must be 0 (off) or a positive number of steps")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, not {self.compile_mode!r}")
        if self.compile_backend not in COMPILE_BACKENDS:
            raise ValueError(f"compile_backend must be one of {COMPILE_BACKENDS}, not {self.compile_backend!r}")
        self.buckets  # noqa: B018 - parses, raising on a malformed compile_buckets
        if self.decode_chunk_size != "auto" and not (self.decode_chunk_size.isdigit()
                                                     and int(self.decode_chunk_size) > 0):
            raise ValueError(f"decode_chunk_size must be a positive integer or 'auto', not {self.decode_chunk_size!r}")
        if self.progress_model and not _MODEL_NAME.fullmatch(self.progress_model):
            raise ValueError(f"progress_model must be a Triton model name or empty, not {self.progress_model!r}")

    @property
    def buckets(self) -> tuple[tuple[int, int, int], ...]:
        """``compile_buckets`` as (width, height, frames) triples."""
        buckets = []
        for item in filter(None, (part.strip() for part in self.compile_buckets.split(","))):
            match = _BUCKET.fullmatch(item)
            if match is None:
                raise ValueError(f"compile_buckets: {item!r} is not WIDTHxHEIGHTxFRAMES, e.g. 512x512x16")
            width, height, frames = (int(group) for group in match.groups())
            if width < 64 or height < 64 or width % 8 or height % 8 or frames < 1:
                raise ValueError(f"compile_buckets: {item!r} needs sides that are multiples of 8 (at least 64) "
                                 "and at least one frame")
            buckets.append((width, height, frames))
        return tuple(buckets)
