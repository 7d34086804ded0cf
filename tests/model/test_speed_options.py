"""The speed options of the model (issue 15) on the tiny model, without Triton: chunked VAE
decode, step caching, and torch.compile with shape buckets and a persistent cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from i2v_model import ModelSettings, VideoGenerator, build_request
from i2v_model.generator import AUTO_CPU_DECODE_CHUNK, decode_chunk_frames
from i2v_model.step_cache import deep_blocks
from tests.support.media import gradient_png

REPO_ROOT = Path(__file__).resolve().parents[2]


def make(settings: ModelSettings, **overrides):
    fields = dict(image=gradient_png(), prompt="a cat", negative_prompt=None, num_frames=8,
                  num_inference_steps=2, guidance_scale=9.0, height=64, width=64, seed=1)
    fields.update(overrides)
    return build_request(settings, **fields)


class TestSettings:
    def test_speed_parameters_are_typed(self, tmp_path: Path) -> None:
        settings = ModelSettings.from_parameters(
            {"model_path": "x", "torch_compile": "true", "compile_buckets": "512x512x16, 1280x704x16",
             "compile_cache_dir": "cache", "decode_chunk_size": "4", "step_cache_interval": "3"},
            environ={}, base_dir=tmp_path)
        assert settings.buckets == ((512, 512, 16), (1280, 704, 16))
        assert settings.compile_cache_dir == str(tmp_path / "cache")  # relative to the model folder
        assert (settings.decode_chunk_size, settings.step_cache_interval) == ("4", 3)
        assert ModelSettings.from_parameters({"model_path": "x"}, environ={}).decode_chunk_size == "auto"

    @pytest.mark.parametrize("parameters, message", [
        ({"compile_buckets": "512x512"}, "is not WIDTHxHEIGHTxFRAMES"),
        ({"compile_buckets": "60x64x8"}, "multiples of 8"),
        ({"decode_chunk_size": "0"}, "decode_chunk_size must be a positive integer or 'auto'"),
        ({"decode_chunk_size": "all"}, "decode_chunk_size must be"),
        ({"step_cache_interval": "-1"}, "step_cache_interval must be 0"),
    ])
    def test_bad_speed_parameters_are_refused(self, parameters, message) -> None:
        with pytest.raises(ValueError, match=message):
            ModelSettings.from_parameters({"model_path": "x", **parameters}, environ={})

    def test_request_interval_overrides_the_config_and_is_bounded(self) -> None:
        settings = ModelSettings(model_path="x", step_cache_interval=3, max_inference_steps=50)
        assert make(settings).step_cache_interval == 3
        assert make(settings, step_cache_interval=0).step_cache_interval == 0
        with pytest.raises(ValueError, match="STEP_CACHE_INTERVAL must be between 0"):
            make(settings, step_cache_interval=51)

    def test_decode_chunk_is_bounded_by_the_frames(self) -> None:
        assert decode_chunk_frames("auto", "cpu", 64, 64, 16, 4) == AUTO_CPU_DECODE_CHUNK
        assert decode_chunk_frames("auto", "cpu", 64, 64, 3, 4) == 3
        assert decode_chunk_frames("32", "cpu", 64, 64, 16, 4) == 16


@pytest.fixture(scope="module")
def generator(tiny_model_path: Path) -> VideoGenerator:
    return VideoGenerator.load(ModelSettings(model_path=str(tiny_model_path)))


class TestChunkedDecode:
    def test_chunked_decode_equals_one_frame_at_a_time(self, generator: VideoGenerator) -> None:
        import torch

        pipeline = generator.pipeline
        latents = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            one_at_a_time = pipeline.decode_latents(latents, decode_chunk_size=1)
            chunked = pipeline.decode_latents(latents, decode_chunk_size=8)
        # Each frame goes through the 2-D decoder alone either way; batching only changes how
        # the convolutions block their loops, so fp32 rounding at most.
        torch.testing.assert_close(chunked, one_at_a_time, rtol=0, atol=1e-5)

    def test_the_setting_reaches_the_decoder(self, generator: VideoGenerator, monkeypatch) -> None:
        vae = generator.pipeline.vae
        decode = vae.decode
        calls: list[int] = []

        def counting_decode(latents, *args, **kwargs):
            calls.append(latents.shape[0])
            return decode(latents, *args, **kwargs)

        monkeypatch.setattr(vae, "decode", counting_decode)
        settings = ModelSettings(model_path="x")
        frames = {}
        for chunk in ("1", "auto"):
            monkeypatch.setattr(generator, "decode_chunk_size", chunk)
            calls.clear()
            [result] = generator.generate([make(settings)])
            frames[chunk] = result.frames
            assert calls == ([1] * 8 if chunk == "1" else [8]), (chunk, calls)
        assert np.abs(frames["1"].astype(int) - frames["auto"].astype(int)).max() <= 1


class TestStepCaching:
    @staticmethod
    def count_deep_evaluations(generator: VideoGenerator) -> list[int]:
        """One entry per real run of the middle block (a submodule hook: the cached path
        never reaches it)."""
        calls: list[int] = []
        deep = deep_blocks(generator.pipeline.unet)
        handles = [deep[len(deep) // 2].resnets[0].register_forward_hook(lambda *_: calls.append(1))]
        return calls, handles

    @pytest.mark.parametrize("interval, expected", [(0, 6), (1, 6), (2, 3), (3, 2), (6, 1)])
    def test_deep_blocks_run_every_interval_steps(self, generator: VideoGenerator, interval: int,
                                                  expected: int) -> None:
        calls, handles = self.count_deep_evaluations(generator)
        try:
            [result] = generator.generate([make(ModelSettings(model_path="x"), num_inference_steps=6,
                                                step_cache_interval=interval)])
        finally:
            for handle in handles:
                handle.remove()
        assert result.error is None
        assert len(calls) == expected
        # The wrappers are gone afterwards: a plain run computes every step again.
        assert all("forward" not in vars(block) for block in deep_blocks(generator.pipeline.unet))

    def test_cached_frames_stay_close_to_the_plain_run(self, generator: VideoGenerator) -> None:
        settings = ModelSettings(model_path="x")
        [plain] = generator.generate([make(settings, num_inference_steps=4)])
        [cached] = generator.generate([make(settings, num_inference_steps=4, step_cache_interval=2)])
        [again] = generator.generate([make(settings, num_inference_steps=4, step_cache_interval=2)])
        assert np.array_equal(cached.frames, again.frames)  # still seeded and deterministic
        assert cached.frames.shape == plain.frames.shape


def _compile_counters() -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {"frames_ok": counters["frames"]["ok"], "graphs": counters["stats"]["unique_graphs"]}


class TestCompile:
    """The compiled UNet on the tiny model at its smallest bucket (64x64, 8 frames, guidance 9).

    Traced with the ``eager`` backend (dynamo capture only): inductor's C++ build of the UNet's ~150 kernels
    takes over 8 minutes on 2 busy cores, and routing and warm-up do not depend on the backend.
    TestCompileCache covers inductor and the cache folder.
    """

    @pytest.fixture(scope="class")
    def compiled(self, tiny_model_path: Path) -> dict:
        import torch

        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        settings = ModelSettings(model_path=str(tiny_model_path), torch_compile=True, compile_buckets="64x64x8",
                                 compile_backend="eager")
        generator = VideoGenerator.load(settings)
        return {"generator": generator, **_compile_counters()}

    def test_warm_up_compiles_at_load(self, compiled: dict) -> None:
        generator = compiled["generator"]
        assert compiled["frames_ok"] >= 1 and compiled["graphs"] >= 1
        assert generator.warmup_seconds > 0 and len(generator.compiled_unet.warm_keys) == 1

    def test_bucket_request_runs_compiled_without_compiling(self, compiled: dict) -> None:
        generator = compiled["generator"]
        before = _compile_counters()
        compiled_before = generator.compiled_unet.compiled_calls
        [result] = generator.generate([make(ModelSettings(model_path="x"), num_inference_steps=2)])
        assert result.error is None
        assert generator.compiled_unet.compiled_calls == compiled_before + 2
        assert _compile_counters() == before

    def test_off_bucket_shape_runs_eagerly_without_compiling(self, compiled: dict) -> None:
        generator = compiled["generator"]
        before = _compile_counters()
        eager_before = generator.compiled_unet.eager_calls
        settings = ModelSettings(model_path="x")
        [other_size] = generator.generate([make(settings, height=72, width=64, num_inference_steps=2)])
        [no_guidance] = generator.generate([make(settings, guidance_scale=1.0, num_inference_steps=1)])
        [step_cached] = generator.generate([make(settings, num_inference_steps=2, step_cache_interval=2)])
        assert other_size.error is None and no_guidance.error is None and step_cached.error is None
        assert generator.compiled_unet.eager_calls == eager_before + 5
        assert _compile_counters() == before

    def test_compiled_frames_match_eager_frames(self, compiled: dict, generator: VideoGenerator) -> None:
        settings = ModelSettings(model_path="x")
        [traced] = compiled["generator"].generate([make(settings)])
        [eager] = generator.generate([make(settings)])
        assert np.abs(traced.frames.astype(int) - eager.frames.astype(int)).max() <= 1


# One model start, in a fresh process: inductor compiles the tiny UNet's time embedding (a few
# kernels, where the whole UNet would take many minutes) with the cache folder, then saves the
# portable artifacts, as VideoGenerator.load does.
_CACHED_START = r"""
import json, sys, time
import torch
from i2v_model.compiled_unet import save_cache_artifacts, use_cache_dir
from i2v_model.pipeline import controlled_pipeline_class
from torch._dynamo.utils import counters

use_cache_dir(sys.argv[2])
unet = controlled_pipeline_class().from_pretrained(sys.argv[1]).unet
module = torch.compile(unet.time_embedding, dynamic=False)
started = time.perf_counter()
with torch.inference_mode():
    module(torch.randn(2, unet.time_embedding.linear_1.in_features))
seconds = time.perf_counter() - started
save_cache_artifacts(sys.argv[2])
print(json.dumps({"seconds": seconds, "hits": counters["inductor"]["fxgraph_cache_hit"],
                  "misses": counters["inductor"]["fxgraph_cache_miss"]}))
"""


class TestCompileCache:
    def test_a_second_start_reuses_the_cache_folder(self, tiny_model_path: Path, tmp_path: Path) -> None:
        cache_dir = tmp_path / "compile-cache"
        starts = []
        for _ in range(2):
            completed = subprocess.run([sys.executable, "-c", _CACHED_START, str(tiny_model_path), str(cache_dir)],
                                       capture_output=True, text=True, timeout=600)
            assert completed.returncode == 0, completed.stderr[-3000:]
            starts.append(json.loads(completed.stdout.strip().splitlines()[-1]))
        cold, warm = starts
        assert cold["misses"] >= 1 and cold["hits"] == 0
        assert warm["misses"] == 0 and warm["hits"] >= 1
        assert warm["seconds"] < cold["seconds"]
        assert (cache_dir / "artifacts.bin").is_file() and any((cache_dir / "inductor").iterdir())


def test_bench_gpu_runs_on_the_tiny_model(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_gpu.py"), "--device", "cpu", "--tiny", "--steps", "1",
         "--shapes", "64x64x8", "--json", str(output),
         # Three rows keep it short; torch.compile is left out: on CPU it takes minutes (TestCompile
         # covers it).
         "--configs", "step caching every 2 steps,shipped default"],
        capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(output.read_text())
    configs = {row["config"] for row in report["rows"]}
    assert configs == {"plain", "step caching every 2 steps", "shipped default"}
    for row in report["rows"]:
        assert row["error"] is None, row
        assert row["step_ms_median"] > 0 and row["vs_plain_mean_abs"] is not None
    assert "| shape | config | step_ms_median |" in completed.stdout



@pytest.mark.integration
def test_step_cache_interval_travels_through_triton(triton) -> None:
    """The optional STEP_CACHE_INTERVAL input reaches the model: 0 is the plain run, a bad value
    fails that request with the reason."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from gateway.generation.triton_inputs import MODEL_NAME, VideoRequest, build_inputs

    client = httpclient.InferenceServerClient(triton.http_url, network_timeout=300)

    def run(interval: int | None) -> np.ndarray:
        request = VideoRequest(image=gradient_png(), prompt="a cat", num_frames=8, num_inference_steps=4, height=64,
                               width=64, seed=5, step_cache_interval=interval)
        return client.infer(MODEL_NAME, build_inputs(httpclient, request)).as_numpy("FRAMES")

    assert np.array_equal(run(None), run(0))  # the CPU config's default is off
    assert run(2).shape == (1, 8, 64, 64, 3)
    with pytest.raises(InferenceServerException, match="STEP_CACHE_INTERVAL must be between 0"):
        run(-1)
