"""Where generated videos live: unguessable names in one folder, served at ``/outputs/``.

A video's poster shares its random name with another suffix (``abc.webm`` and ``abc.jpg``)."""

from __future__ import annotations

import secrets
from pathlib import Path

URL_PREFIX = "outputs"
POSTER_SUFFIX = ".jpg"


def poster_path(video: Path) -> Path:
    return video.with_suffix(POSTER_SUFFIX)


class OutputStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def new_path(self, suffix: str = ".mp4") -> Path:
        # 128 random bits: names cannot be guessed or enumerated.
        return self.directory / f"{secrets.token_urlsafe(16)}{suffix}"

    @staticmethod
    def relative_path(path: Path) -> str:
        return f"{URL_PREFIX}/{path.name}"

    def url(self, base_url: str, path: Path) -> str:
        return f"{base_url.rstrip('/')}/{self.relative_path(path)}"
