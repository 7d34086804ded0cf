"""Per-step progress of a Triton request, as the model reports it.

Triton answers an ``i2vgen_xl`` request only when its video is done, so the model also reports
each denoising step to the small decoupled model ``i2vgen_xl_progress`` inside the same Triton
server. A watcher opens a gRPC stream on that model for one request id and receives every step
in order, then a final response when the request ends. Nothing is shared between the gateway's
host and Triton's but the gRPC connection, and direct Triton callers keep plain ``infer``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """``step`` of ``total`` denoising steps done; (0, 0) before the model has started."""

    step: int
    total: int

    @property
    def started(self) -> bool:
        return self.total > 0
