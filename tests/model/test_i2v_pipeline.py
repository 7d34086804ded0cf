"""The i2v_model package alone, without Triton: settings, validation, grouping, seeding, cancel."""

from __future__ import annotations

import ast
import dataclasses
import io
import struct
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageFile
import pytest

import i2v_model
from i2v_model import (
    GenerationCancelledError,
    GenerationFailedError,
    InvalidRequestError,
    ModelSettings,
    VideoGenerator,
    build_request,
    decode_image,
    fit_image,
    frames_to_uint8,
    group_by_batch_key,
)
from i2v_tools.sample_inputs import png_declaring
from tests.support.media import gradient_png, image_bytes

SETTINGS = ModelSettings(model_path="unused", max_num_frames=32, max_inference_steps=50, max_pixels=512 * 512)


def make(settings: ModelSettings = SETTINGS, **overrides):
    fields = dict(image=gradient_png(), prompt="a cat", negative_prompt=None, num_frames=8,
                  num_inference_steps=2, guidance_scale=9.0, height=64, width=64, seed=1)
    fields.update(overrides)
    return build_request(settings, **fields)


class TestSettings:
    def test_parameters_are_typed_and_env_overrides_model_path(self, tmp_path: Path) -> None:
        settings = ModelSettings.from_parameters(
            {"model_path": "weights", "max_num_frames": "24", "channels_last": "true"},
            environ={"I2V_MODEL_PATH": "ali-vilab/i2vgen-xl"})
        assert settings.max_num_frames == 24 and settings.channels_last is True
        assert settings.model_path == "ali-vilab/i2vgen-xl"
        assert settings.progress_model == "i2vgen_xl_progress"

    def test_empty_progress_model_turns_reports_off(self) -> None:
        settings = ModelSettings.from_parameters({"model_path": "x", "progress_model": ""}, environ={})
        assert settings.progress_model == ""

    def test_relative_model_path_resolves_against_the_model_folder(self, tmp_path: Path) -> None:
        (tmp_path / "weights").mkdir()
        settings = ModelSettings.from_parameters({"model_path": "weights"}, environ={}, base_dir=tmp_path)
        assert settings.model_path == str(tmp_path / "weights")

    @pytest.mark.parametrize("parameters, message", [
        ({"model_path": "x", "colour": "red"}, "unknown model parameters: colour"),
        ({"model_path": "x", "max_num_frames": "many"}, "max_num_frames"),
        ({"model_path": "x", "dtype": "float8"}, "dtype must be one of"),
        ({"model_path": "x", "device": "tpu"}, "device must be"),
        ({"model_path": "x", "batch_invariant": "maybe"}, "not a boolean"),
        ({"model_path": "x", "progress_model": "../other"}, "progress_model must be a Triton model name"),
        ({"model_path": "x", "progress_dir": "/tmp/p"}, "unknown model parameters: progress_dir"),
        ({}, "model_path is empty"),
    ])
    def test_bad_parameters_are_refused_at_load(self, parameters, message) -> None:
        with pytest.raises(ValueError, match=message):
            ModelSettings.from_parameters(parameters, environ={})


class TestValidation:
    @pytest.mark.parametrize("overrides, message", [
        ({"num_frames": 0}, "NUM_FRAMES must be between 1 and 32, got 0"),
        ({"num_frames": 33}, "NUM_FRAMES must be between 1 and 32"),
        ({"num_inference_steps": 0}, "NUM_INFERENCE_STEPS must be between 1 and 50"),
        ({"guidance_scale": float("nan")}, "GUIDANCE_SCALE"),
        ({"height": 60}, "HEIGHT must be a multiple of 8"),
        ({"width": 32}, "WIDTH must be a multiple of 8 and at least 64"),
        ({"height": 1024, "width": 1024}, "exceeds the limit of 262144"),
        ({"seed": -1}, "SEED must be between 0"),
        ({"image": b""}, "IMAGE is empty"),
        ({"image": b"definitely not an image"}, "IMAGE is not a decodable image"),
        ({"image": image_bytes()[:40]}, "IMAGE is not a decodable image"),
    ])
    def test_each_bad_input_names_the_problem(self, overrides, message) -> None:
        with pytest.raises(InvalidRequestError, match=message):
            make(**overrides)

    def test_missing_seed_is_picked_and_kept(self) -> None:
        request = make(seed=None)
        assert 0 <= request.seed <= 2**53 - 1

    def test_image_is_fitted_to_the_requested_size(self) -> None:
        request = make(width=128, height=64, image=image_bytes(size=(50, 80)))
        assert request.image.size == (128, 64) and request.image.mode == "RGB"

    def test_fit_keeps_the_centre(self) -> None:
        source = PIL.Image.open(io.BytesIO(gradient_png((200, 100))))
        fitted = fit_image(source, 100, 100)
        assert fitted.size == (100, 100)
        # A centre crop of a horizontal gradient starts a quarter of the way in.
        assert 50 < fitted.getpixel((0, 50))[0] < 80

    def test_decode_converts_modes_to_rgb(self) -> None:
        for mode in ("L", "RGBA", "P"):
            assert decode_image(image_bytes(mode=mode)).mode == "RGB"


class TestHostileInputs:
    """Limits checked before work, only the documented formats, and no decoder failure escapes."""

    @pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX", "SGI", "IM"])
    def test_formats_beyond_the_documented_ones_are_refused(self, fmt) -> None:
        with pytest.raises(InvalidRequestError, match="accepted format .PNG, JPEG, WebP, BMP, GIF or TIFF"):
            make(image=image_bytes(fmt=fmt, size=(16, 16)))

    @pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
    def test_the_documented_formats_decode(self, fmt) -> None:
        assert make(image=image_bytes(fmt=fmt)).image.size == (64, 64)

    def test_a_truncated_qoi_is_a_bad_image_not_a_crash(self) -> None:
        # 14 bytes, 1x1, no data: Pillow's QOI decoder raises IndexError on it.
        with pytest.raises(InvalidRequestError, match="IMAGE is not a decodable image"):
            make(image=b"qoif" + struct.pack(">IIBB", 1, 1, 3, 0))

    def test_any_exception_of_a_decoder_is_a_bad_image(self, monkeypatch) -> None:
        def broken_load(self):
            raise IndexError("index out of range")

        monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", broken_load)
        with pytest.raises(InvalidRequestError, match="truncated or corrupt: index out of range"):
            make()

    def test_the_pixel_limit_is_checked_from_the_header(self) -> None:
        settings = dataclasses.replace(SETTINGS, max_image_pixels=1_000_000)
        with pytest.raises(InvalidRequestError, match="IMAGE is 13000x13000 = 169000000 pixels; the limit is 1000000"):
            make(settings, image=png_declaring(13000, 13000))

    def test_the_byte_limit_is_checked_before_decoding(self) -> None:
        data = image_bytes()
        settings = dataclasses.replace(SETTINGS, max_image_bytes=len(data) - 1)
        with pytest.raises(InvalidRequestError, match=f"IMAGE is {len(data)} bytes; the limit is {len(data) - 1}"):
            make(settings, image=data)

    @pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
    def test_prompts_have_a_length_limit(self, field) -> None:
        settings = dataclasses.replace(SETTINGS, max_prompt_chars=10)
        make(settings, **{field: "x" * 10})
        with pytest.raises(InvalidRequestError, match="is 11 characters; the limit is 10"):
            make(settings, **{field: "x" * 11})

    def test_the_work_limit_bounds_pixels_frames_and_steps_together(self) -> None:
        settings = dataclasses.replace(SETTINGS, max_work=64 * 64 * 8 * 2)
        make(settings)
        with pytest.raises(InvalidRequestError, match="exceeds the model's work limit of 65536"):
            make(settings, num_inference_steps=3)

    @pytest.mark.parametrize("size", [(1, 8000), (8000, 1), (3, 5000)])
    def test_a_thin_image_is_cropped_before_it_is_scaled(self, size, monkeypatch) -> None:
        sizes: list[tuple[int, int]] = []
        real_resize = PIL.Image.Image.resize

        def recording(self, new_size, *args, **kwargs):
            sizes.append(tuple(new_size))
            return real_resize(self, new_size, *args, **kwargs)

        monkeypatch.setattr(PIL.Image.Image, "resize", recording)
        request = make(image=image_bytes(size=size), width=256, height=256)
        assert request.image.size == (256, 256)
        assert sizes == [(256, 256)], "only the output size may be allocated"

    def test_crop_before_scale_keeps_what_scaling_first_kept(self) -> None:
        source = PIL.Image.open(io.BytesIO(gradient_png((200, 100)))).convert("RGB")
        scaled_first = source.resize((128, 64), PIL.Image.BICUBIC).crop((32, 0, 96, 64))
        difference = np.abs(np.asarray(fit_image(source, 64, 64), dtype=np.int16) - np.asarray(scaled_first))
        assert difference.mean() < 2


def test_grouping_keeps_order_and_splits_on_shape() -> None:
    requests = [make(), make(num_frames=16), make(seed=5), make(guidance_scale=1.0), make(num_frames=16)]
    assert group_by_batch_key(requests) == [[0, 2], [1, 4], [3]]


def test_frames_round_to_uint8() -> None:
    frames = frames_to_uint8(np.array([0.0, 0.499 / 255, 0.5 / 255 + 1e-6, 1.0, 1.2], dtype=np.float32))
    assert frames.tolist() == [0, 0, 1, 255, 255]


@pytest.fixture(scope="module")
def generator(tiny_model_path: Path) -> VideoGenerator:
    return VideoGenerator.load(ModelSettings(model_path=str(tiny_model_path)))


class TestTinyModel:
    def test_frames_have_the_requested_shape(self, generator: VideoGenerator) -> None:
        [result] = generator.generate([make(height=72, width=96, num_frames=5)])
        assert result.error is None
        assert result.frames.shape == (5, 72, 96, 3) and result.frames.dtype == np.uint8

    def test_seeded_item_is_bit_identical_alone_and_in_a_batch(self, generator: VideoGenerator) -> None:
        target = make(seed=42)
        [alone] = generator.generate([target])
        batch = generator.generate([make(seed=7, prompt="a dog", image=image_bytes("blue")), target,
                                    make(seed=9, negative_prompt="blurry")])
        assert np.array_equal(alone.frames, batch[1].frames)
        assert not np.array_equal(batch[1].frames, batch[0].frames)

    def test_different_seeds_differ(self, generator: VideoGenerator) -> None:
        first, second = generator.generate([make(seed=1), make(seed=2)])
        assert not np.array_equal(first.frames, second.frames)

    def test_cancelled_group_stops_between_steps(self, generator: VideoGenerator) -> None:
        steps_seen: list[int] = []
        results = generator.generate([make(num_inference_steps=20)], is_cancelled=lambda i: len(steps_seen) >= 2,
                                     on_step=lambda indices, done, total: steps_seen.append(done))
        assert isinstance(results[0].error, GenerationCancelledError)
        assert steps_seen == [1, 2]
        assert "after 2 of 20" in str(results[0].error)

    def test_each_step_names_the_requests_of_the_running_call(self, generator: VideoGenerator) -> None:
        steps: list = []
        generator.generate([make(seed=1), make(seed=2, num_frames=5)],
                           on_step=lambda indices, done, total: steps.append((list(indices), done, total)))
        assert steps == [([0], 1, 2), ([0], 2, 2), ([1], 1, 2), ([1], 2, 2)]

    def test_each_call_is_reported_done_as_it_ends(self, generator: VideoGenerator) -> None:
        events: list = []
        results = generator.generate(
            [make(seed=1), make(seed=2, num_frames=5), make(seed=3)],
            on_step=lambda indices, done, total: events.append(("step", list(indices))),
            on_done=lambda indices, done: events.append(("done", list(indices), [r.frames.shape for r in done])))
        dones = [event for event in events if event[0] == "done"]
        assert dones == [("done", [0], [(8, 64, 64, 3)]), ("done", [2], [(8, 64, 64, 3)]),
                         ("done", [1], [(5, 64, 64, 3)])]
        # Each is reported before the next call's first step, not at the end of the batch.
        assert events.index(dones[0]) < events.index(("step", [2]))
        assert all(result.frames is not None for result in results)

    def test_a_cancelled_neighbour_does_not_stop_the_others(self, generator: VideoGenerator) -> None:
        results = generator.generate([make(seed=1), make(seed=2)], is_cancelled=lambda i: i == 0)
        assert isinstance(results[0].error, GenerationCancelledError)
        assert results[1].error is None and results[1].frames is not None

    def test_nan_frames_become_a_per_request_error(self, generator: VideoGenerator, monkeypatch) -> None:
        real_run = generator._run_group

        def poisoned(group, *args):
            videos = real_run(group, *args)
            for index, request in enumerate(group):
                if request.seed == 1:
                    videos[index, 0, 0, 0, 0] = np.nan
            return videos

        monkeypatch.setattr(generator, "_run_group", poisoned)
        first, second = generator.generate([make(seed=1), make(seed=2)])
        assert isinstance(first.error, GenerationFailedError) and "NaN" in str(first.error)
        assert second.frames is not None


class TestBatchModes:
    """batch_invariant: one pipeline call per request; otherwise one batched call per group."""

    @pytest.fixture(scope="class")
    def batched(self, tiny_model_path: Path) -> VideoGenerator:
        return VideoGenerator.load(ModelSettings(model_path=str(tiny_model_path), batch_invariant=False))

    @staticmethod
    def call_sizes(generator: VideoGenerator, monkeypatch, requests) -> list[int]:
        sizes: list[int] = []
        real_run = generator._run_group

        def counting(group, *args):
            sizes.append(len(group))
            return real_run(group, *args)

        monkeypatch.setattr(generator, "_run_group", counting)
        results = generator.generate(requests)
        assert all(r.error is None for r in results)
        return sizes

    def test_batched_mode_makes_one_call_per_group(self, batched: VideoGenerator, monkeypatch) -> None:
        requests = [make(seed=1), make(seed=2, num_frames=12), make(seed=3), make(seed=4)]
        assert self.call_sizes(batched, monkeypatch, requests) == [3, 1]

    def test_invariant_mode_makes_one_call_per_request(self, generator: VideoGenerator, monkeypatch) -> None:
        requests = [make(seed=1), make(seed=2), make(seed=3)]
        assert self.call_sizes(generator, monkeypatch, requests) == [1, 1, 1]

    def test_same_prompt_and_image_neighbours_leave_a_seed_unchanged(self, generator: VideoGenerator) -> None:
        # Identical inputs except the seed: the case where batched CPU kernels differ by rounding.
        [alone] = generator.generate([make(seed=1)])
        for size in (2, 3, 5):
            batch = generator.generate([make(seed=1 + i) for i in range(size)])
            assert np.array_equal(alone.frames, batch[0].frames), f"differs in a batch of {size}"

    def test_batched_mode_is_close_to_alone(self, batched: VideoGenerator) -> None:
        [alone] = batched.generate([make(seed=1)])
        batch = batched.generate([make(seed=1), make(seed=2)])
        difference = np.abs(alone.frames.astype(np.int16) - batch[0].frames.astype(np.int16))
        assert difference.max() <= 2 and difference.mean() < 0.01


def test_the_package_imports_neither_triton_nor_the_gateway() -> None:
    # Only the Triton glue (model.py) may import Triton; the gateway sits above the model.
    forbidden = {"triton_python_backend_utils", "tritonclient", "gateway"}
    for path in Path(i2v_model.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {name.split(".")[0] for name in names} & forbidden, f"{path.name} imports {names}"
