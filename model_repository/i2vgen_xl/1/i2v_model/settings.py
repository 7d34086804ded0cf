"""Model tunables: Triton config ``parameters`` (all strings there) parsed once and validated."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DTYPES = ("float32", "float16", "bfloat16")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


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
    max_pixels: int = 1280 * 1280
    # True: each request of a group runs as its own pipeline call, so its frames cannot depend
    # on its neighbours. False: one batched call per group (faster on CPU for small videos),
    # where ATen's vectorised element-wise kernels make a seeded item differ by rounding.
    batch_invariant: bool = True
    vae_tiling: bool = False  # decode in overlapping tiles: less memory at high resolution
    channels_last: bool = False
    torch_compile: bool = False
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
                settings = cls(**{**values, "model_path": str(candidate)})
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.model_path:
            raise ValueError("model_path is empty: set the model parameter or I2V_MODEL_PATH")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, not {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', not {self.device!r}")
        for name in ("max_num_frames", "max_inference_steps", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.progress_model and not _MODEL_NAME.fullmatch(self.progress_model):
            raise ValueError(f"progress_model must be a Triton model name or empty, not {self.progress_model!r}")
