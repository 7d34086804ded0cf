"""MP4 encoding alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.generation.video import encode_mp4
from tests.support.media import probe_mp4


def test_frames_become_a_playable_h264_mp4(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (12, 64, 96, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    encode_mp4(frames, 12, path)
    info = probe_mp4(path.read_bytes())
    assert info == {"codec": "h264", "width": 96, "height": 64, "pix_fmt": "yuv420p", "fps": 12.0, "frames": 12,
                    "faststart": True}
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("frames", [np.zeros((4, 64, 64), np.uint8), np.zeros((4, 63, 64, 3), np.uint8),
                                    np.zeros((4, 64, 64, 3), np.float32)])
def test_wrong_frames_are_refused(tmp_path: Path, frames: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_mp4(frames, 8, tmp_path / "x.mp4")
