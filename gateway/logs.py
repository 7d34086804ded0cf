"""Logging set-up: text or one JSON object a line, and prompts hashed or redacted by default.

Prompts are user content and may be personal or confidential: by default a log line shows a
short SHA-256 of a prompt (enough to tell repeats apart), never the text. Tokens and signatures
are never logged anywhere (see request_log.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone

# Attributes every LogRecord has; anything else was passed with extra= and goes into JSON.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def prompt_for_log(text: str | None, mode: str) -> str:
    """``sha256:<12 hex>`` (hash), ``[redacted]`` (redact) or the text itself (full)."""
    if text is None:
        return "-"
    if mode == "full":
        return text
    if mode == "redact":
        return "[redacted]"
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]
