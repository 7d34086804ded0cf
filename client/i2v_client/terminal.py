"""What the ``i2v`` command shows: a progress bar on a terminal (none when piped), and output
as text for people or as JSON for programs."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from pydantic import BaseModel

from i2v_client.models import Progress

BAR_WIDTH = 30


class ProgressBar:
    """One line redrawn in place on stderr; silent unless stderr is a terminal."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.drawn = False

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        if progress.step is not None and progress.total:
            done = BAR_WIDTH * progress.step // progress.total
            line = f"{progress.status:<10} [{'#' * done}{'.' * (BAR_WIDTH - done)}] {progress.step}/{progress.total}"
        else:
            line = f"{progress.status:<10} {progress.message}"
        self.stream.write("\r\x1b[2K" + line[:100])
        self.stream.flush()
        self.drawn = True

    def done(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def as_json(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, indent=2, sort_keys=True)


def emit(value: Any, text: str, json_output: bool) -> None:
    """The answer on stdout: ``value`` as JSON with ``--json``, else ``text``."""
    print(as_json(value) if json_output else text)
