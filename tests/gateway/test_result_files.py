"""The files a result owns (its video in any format and its poster) through the record, the result
cache (with the SQLite store as its index) and retention."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from gateway.generation.cache import ResultCache
from gateway.generation.outputs import OutputStore
from gateway.generation.results import VideoResult
from gateway.jobs.retention import remove_files_older_than
from gateway.jobs.sqlite_store import SQLiteJobStore
from gateway.schemas import OutputFormat

KEY = "ab" * 32


def made(outputs: OutputStore, suffix: str = ".webm") -> VideoResult:
    """A result whose video and poster exist in the outputs folder, as ``render`` leaves them."""
    video = outputs.new_path(suffix)
    video.write_bytes(b"video " + suffix.encode())
    video.with_suffix(".jpg").write_bytes(b"poster")
    return VideoResult(video_file=video.name, seed=3, width=256, height=256, num_frames=8, fps=8, inference_time=1.0,
                       output_format=OutputFormat.webm, poster_file=video.with_suffix(".jpg").name)


def test_a_record_stored_before_formats_and_posters_still_loads() -> None:
    old = '{"video_file": "abc.mp4", "seed": 1, "width": 256, "height": 256, "num_frames": 8, "fps": 8, ' \
          '"inference_time": 1.5, "cached": false}'
    result = VideoResult.model_validate_json(old)
    assert result.output_format is OutputFormat.mp4 and result.poster_file is None and result.files == ["abc.mp4"]
    response = result.response(OutputStore(Path("/nonexistent-outputs")), "http://gw")
    assert response.video_url == "http://gw/outputs/abc.mp4" and response.output_format is OutputFormat.mp4
    assert response.poster_path is None and response.poster_url is None


def test_response_names_the_video_and_its_poster(tmp_path: Path) -> None:
    outputs = OutputStore(tmp_path)
    result = made(outputs)
    response = result.response(outputs, "http://gw/")
    stem = Path(result.video_file).stem
    assert (response.video_path, response.poster_path) == (f"outputs/{stem}.webm", f"outputs/{stem}.jpg")
    assert response.poster_url == f"http://gw/outputs/{stem}.jpg" and response.output_format is OutputFormat.webm


def test_a_cache_hit_links_video_and_poster_and_eviction_removes_both(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        outputs = OutputStore(tmp_path / "outputs")
        cache = ResultCache(store, tmp_path / "cache", outputs, max_bytes=1024)
        try:
            first = made(outputs)
            await cache.remember(KEY, first)
            assert sorted(p.name for p in cache.directory.iterdir()) == [f"{KEY}.jpg", f"{KEY}.webm"]

            hit = await cache.lookup(KEY)
            assert hit is not None and hit.cached and hit.output_format is OutputFormat.webm
            assert hit.video_file != first.video_file and hit.video_file.endswith(".webm")
            assert hit.poster_file == f"{Path(hit.video_file).stem}.jpg"
            for name, original in zip(hit.files, first.files, strict=True):
                assert (outputs.directory / name).read_bytes() == (outputs.directory / original).read_bytes()

            # A poster gone from the cache (a cleaned disk) makes a miss that leaves nothing behind.
            before = set(outputs.directory.iterdir())
            (cache.directory / f"{KEY}.jpg").unlink()
            assert await cache.lookup(KEY) is None
            assert set(outputs.directory.iterdir()) == before

            # Eviction and expiry delete the poster with the video.
            await cache.remember(KEY, first)
            cache.max_bytes = 1
            await cache.remember("cd" * 32, made(outputs, ".gif"))
            assert not list(cache.directory.glob(f"{KEY}.*")), "the evicted entry left files"
            cache.max_bytes = 1024
            await cache.remember(KEY, first)
            assert await cache.expire(time.time() + 1) >= 1
            assert not list(cache.directory.iterdir())
        finally:
            await store.close()
    asyncio.run(scenario())


def test_retention_removes_every_format_and_the_posters(tmp_path: Path) -> None:
    old, new = time.time() - 7200, time.time()
    for name, when in [("a.mp4", old), ("a.jpg", old), ("b.webm", old), ("b.jpg", old), ("c.gif", old),
                       ("d.zip", old), (".e.zip.partial", old), ("f.webm", new), ("f.jpg", new)]:
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (when, when))
    assert remove_files_older_than(tmp_path, time.time() - 3600) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.jpg", "f.webm"]


def test_the_cache_key_keeps_earlier_keys_and_tells_step_caching_apart() -> None:
    from dataclasses import replace

    from gateway.generation.cache import cache_key
    from gateway.generation.triton_inputs import VideoRequest

    video = VideoRequest(image=b"png", prompt="a cat", seed=7, height=256, width=256, num_frames=8,
                         num_inference_steps=4)
    # What the release before step_cache_interval computed for this request (git 1d6762e): its
    # cached videos are still found.
    assert cache_key("i2vgen_xl", video, 8, OutputFormat.mp4) == \
        "4ccdab129f9978359123be2aa324e0ac74f1db0bd06dfe4b676dee4810ed98b1"
    keys = {cache_key("i2vgen_xl", replace(video, step_cache_interval=n), 8, OutputFormat.mp4) for n in (2, 3)}
    assert len(keys) == 2 and cache_key("i2vgen_xl", video, 8, OutputFormat.mp4) not in keys
