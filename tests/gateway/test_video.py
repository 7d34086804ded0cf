"""Encoding alone: every output format and the poster, each read back by another decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.generation.video import (
    ENCODERS,
    Encoder,
    encode_mp4,
    encode_video,
    frame_name,
    gif_durations_ms,
    write_poster,
)
from gateway.schemas import OutputFormat
from tests.support.decoders import ffprobe, gif_info, jpeg_pixels, mean_abs_difference, zip_frames
from tests.support.media import probe_mp4


def moving_gradient(count: int = 12, height: int = 64, width: int = 96) -> np.ndarray:
    """Frames with structure that differ from each other (a GIF merges identical neighbours)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([np.stack([(x * 2 + 9 * i) % 256, (y * 3) % 256, np.full_like(x, 20 * i % 256)], -1)
                     for i in range(count)]).astype(np.uint8)


def test_frames_become_a_playable_h264_mp4(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (12, 64, 96, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    encode_mp4(frames, 12, path)
    info = probe_mp4(path.read_bytes())
    assert info == {"codec": "h264", "width": 96, "height": 64, "pix_fmt": "yuv420p", "fps": 12.0, "frames": 12,
                    "faststart": True}
    assert ffprobe(path) == {"container": "mov,mp4,m4a,3gp,3g2,mj2", "codec": "h264", "width": 96, "height": 64,
                             "pix_fmt": "yuv420p", "fps": 12.0, "frames": 12}
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"], "no partial file is left behind"


def test_webm_is_vp9_yuv420p(tmp_path: Path) -> None:
    path = tmp_path / "clip.webm"
    encode_video(moving_gradient(), 12, OutputFormat.webm, path)
    assert ffprobe(path) == {"container": "matroska,webm", "codec": "vp9", "width": 96, "height": 64,
                             "pix_fmt": "yuv420p", "fps": 12.0, "frames": 12}
    assert [p.name for p in tmp_path.iterdir()] == ["clip.webm"]


def test_gif_loops_with_every_frame_and_the_videos_length(tmp_path: Path) -> None:
    path = tmp_path / "clip.gif"
    encode_video(moving_gradient(12), 8, OutputFormat.gif, path)
    # 12 frames at 8 fps last 1.5 s; delays alternate 120 and 130 ms instead of drifting at 120.
    assert gif_info(path.read_bytes()) == {"format": "GIF", "frames": 12, "size": (96, 64), "loop": 0,
                                           "duration_ms": 1500}


@pytest.mark.parametrize("count, fps, total_ms", [(8, 8, 1000), (16, 12, 1330), (10, 24, 420), (10, 60, 200)])
def test_gif_delays_add_up_to_the_videos_length(count: int, fps: int, total_ms: int) -> None:
    durations = gif_durations_ms(count, fps)
    assert len(durations) == count and sum(durations) == total_ms
    # Whole centiseconds of at least 2 (browsers play shorter delays as 10 cs): 60 fps plays at 50.
    assert all(d % 10 == 0 and d >= 20 for d in durations), durations


def test_frames_zip_holds_lossless_pngs_in_order(tmp_path: Path) -> None:
    frames = moving_gradient(9)
    path = tmp_path / "clip.zip"
    encode_video(frames, 8, OutputFormat.frames, path)
    names, decoded = zip_frames(path.read_bytes())
    assert names == [f"frame_{i:04d}.png" for i in range(9)] == [frame_name(i) for i in range(9)]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, frames, strict=True))


def test_poster_is_the_first_frame_as_jpeg(tmp_path: Path) -> None:
    frames = moving_gradient()
    path = tmp_path / "poster.jpg"
    write_poster(frames, path)
    pixels = jpeg_pixels(path.read_bytes())
    assert pixels.shape == (64, 96, 3)
    assert mean_abs_difference(pixels, frames[0]) < 4 < mean_abs_difference(pixels, frames[6])


def test_every_format_has_a_suffix_and_media_type() -> None:
    assert set(ENCODERS) == set(OutputFormat)
    assert {f: (e.suffix, e.media_type) for f, e in ENCODERS.items()} == {
        OutputFormat.mp4: (".mp4", "video/mp4"), OutputFormat.webm: (".webm", "video/webm"),
        OutputFormat.gif: (".gif", "image/gif"), OutputFormat.frames: (".zip", "application/zip")}


@pytest.mark.parametrize("output_format", list(OutputFormat))
@pytest.mark.parametrize("frames", [np.zeros((4, 64, 64), np.uint8), np.zeros((4, 63, 64, 3), np.uint8),
                                    np.zeros((4, 64, 64, 3), np.float32), np.zeros((0, 64, 64, 3), np.uint8)])
def test_wrong_frames_are_refused(tmp_path: Path, frames: np.ndarray, output_format: OutputFormat) -> None:
    with pytest.raises(ValueError):
        encode_video(frames, 8, output_format, tmp_path / "x")
    assert not list(tmp_path.iterdir())


def test_a_failed_encode_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(frames: np.ndarray, fps: int, path: Path) -> None:
        path.write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setitem(ENCODERS, OutputFormat.gif, Encoder(".gif", "image/gif", broken))
    with pytest.raises(OSError, match="disk full"):
        encode_video(moving_gradient(), 8, OutputFormat.gif, tmp_path / "clip.gif")
    assert not list(tmp_path.iterdir())
