"""``torch.compile`` of the UNet for configured shapes only, with a compile cache that persists.

A compile takes minutes (164 s a shape for the full UNet on an H100), so it happens at load,
in a warm-up over the configured buckets, never inside a request:

* the UNet's ``forward`` becomes a router: a call whose input shapes were seen during the
  warm-up goes to the compiled code, any other call to the eager module kept beside it (and
  even the compiled path runs under the ``eager_on_recompile`` stance, so a guard that fails
  runs eagerly instead of compiling);
* inductor's cache lives in ``compile_cache_dir/inductor`` and PyTorch's portable cache
  artifacts in ``compile_cache_dir/artifacts.bin``, loaded before the warm-up and saved after,
  so a restart with a warm folder skips most of the compile.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger("i2vgen_xl")

ARTIFACTS_FILE = "artifacts.bin"


def use_cache_dir(cache_dir: str) -> None:
    """Point inductor at ``cache_dir`` and load its portable artifacts, if any. Call before the
    first compile; the process keeps the setting (one model per Triton stub process)."""
    import torch

    folder = Path(cache_dir)
    try:
        (folder / "inductor").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # Serving without a persistent cache only costs a full compile at each start.
        logger.warning("compile cache folder %s is not usable (%s): compiling from scratch", folder, exc)
        return
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "inductor")
    artifacts = folder / ARTIFACTS_FILE
    if artifacts.is_file():
        try:
            torch.compiler.load_cache_artifacts(artifacts.read_bytes())
            logger.info("loaded compile cache artifacts from %s", artifacts)
        except Exception as exc:  # noqa: BLE001 - a stale or foreign cache only costs a compile
            logger.warning("ignored the compile cache artifacts in %s: %s", artifacts, exc)


def save_cache_artifacts(cache_dir: str) -> None:
    """Write what this process compiled as portable artifacts (atomically: readers never see half)."""
    import torch

    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return
    artifacts = Path(cache_dir) / ARTIFACTS_FILE
    partial = artifacts.with_suffix(".partial")
    try:
        partial.write_bytes(saved[0])
        partial.replace(artifacts)
    except OSError as exc:
        logger.warning("could not save the compile cache artifacts to %s: %s", artifacts, exc)


def _shape_key(args: tuple, kwargs: dict) -> tuple:
    """What selects compiled code: every tensor argument's shape and dtype, and the grad mode."""
    import torch

    values = [*args, *(kwargs[name] for name in sorted(kwargs))]
    return (torch.is_inference_mode_enabled(), torch.is_grad_enabled(),
            *((tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else type(v).__name__ for v in values))


class CompiledUNet:
    """Routes the UNet's calls: compiled for warmed-up shapes, eager for every other."""

    def __init__(self, unet: Any, mode: str = "default", backend: str = "inductor") -> None:
        import torch

        self.unet = unet
        self.eager_forward: Callable[..., Any] = unet.forward
        # Static shapes: one specialised graph a bucket (warming_up raises dynamo's recompile
        # limit, whose default of 8 would otherwise send later buckets to eager silently).
        # "default" is passed as None: torch refuses a mode beside a non-inductor backend.
        self.compiled_forward = torch.compile(self.eager_forward, dynamic=False, backend=backend,
                                              mode=None if mode == "default" else mode)
        self.warm_keys: set[tuple] = set()
        self.warming = False
        self.compiled_calls = 0
        self.eager_calls = 0
        unet.forward = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        key = _shape_key(args, kwargs)
        if self.warming:
            self.warm_keys.add(key)
            self.compiled_calls += 1
            return self.compiled_forward(*args, **kwargs)
        if key in self.warm_keys:
            self.compiled_calls += 1
            with torch.compiler.set_stance("eager_on_recompile"):
                return self.compiled_forward(*args, **kwargs)
        self.eager_calls += 1
        return self.eager_forward(*args, **kwargs)

    @contextmanager
    def warming_up(self) -> Iterator[None]:
        """Inside the block every call compiles (if needed) and marks its shapes as warm."""
        import torch

        limit = getattr(torch._dynamo.config, "recompile_limit", None)
        if limit is not None:
            torch._dynamo.config.recompile_limit = max(limit, 64)
        self.warming = True
        try:
            yield
        finally:
            self.warming = False

    @contextmanager
    def eager(self) -> Iterator[None]:
        """Calls inside the block run eagerly whatever their shape (e.g. step caching, which
        wraps the UNet's blocks in Python)."""
        saved, self.warm_keys = self.warm_keys, set()
        try:
            yield
        finally:
            self.warm_keys = saved
