"""A random-weight I2VGen-XL pipeline built offline and saved with ``save_pretrained``.

Two sizes share one code path so the server always loads weights with the same
``from_pretrained`` call it uses for the real ``ali-vilab/i2vgen-xl`` weights:

* ``tiny``: same classes and block layout as the real model at toy widths. Built at
  set-up and test time (never committed: saved keys differ across transformers
  versions). It is the embedded default for demos and tests.
* ``full``: the real component configurations with random weights. Compute does not
  depend on weight values, so it gives honest GPU latency and memory figures without
  downloading the 4.6 GB of real weights.

``scripts/build_model.py`` is the command line over this module.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from i2v_tools import REPO_ROOT

TINY_MODEL = REPO_ROOT / "models" / "tiny-i2vgen-xl"
FULL_MODEL = REPO_ROOT / "models" / "full-random-i2vgen-xl"
# Written last; its presence means the folder holds a complete pipeline.
COMPLETE_MARKER = "model_index.json"


def _byte_symbols() -> list[str]:
    """The printable stand-ins CLIP's byte-level BPE uses for the 256 byte values."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def _write_byte_level_clip_vocab(folder: Path) -> None:
    """A CLIP BPE vocabulary over single bytes, since the real one needs the hub."""
    symbols = list(_byte_symbols())
    tokens = symbols + [s + "</w>" for s in symbols]
    merges = ["t h", "th e</w>", "a n", "i n"]
    tokens += ["th", "the</w>", "an", "in", "<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def _components(size: str, vocab_dir: Path) -> dict:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLUNet
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(0)
    if size == "tiny":
        unet = I2VGenXLUNet(
            sample_size=8,
            block_out_channels=(4, 8, 8, 8),
            layers_per_block=1,
            norm_num_groups=2,
            cross_attention_dim=4,
            attention_head_dim=4,
            num_attention_heads=None,
        )
        # Four blocks keep the real scale factor of 8; one block would make the latents
        # pixel-sized and the tiny model 100x slower than it needs to be.
        vae = AutoencoderKL(
            block_out_channels=(8, 8, 8, 8),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            norm_num_groups=2,
            layers_per_block=1,
            sample_size=32,
        )
        text_config = dict(hidden_size=4, intermediate_size=8, num_attention_heads=2, num_hidden_layers=2,
                           projection_dim=4)
        vision_config = CLIPVisionConfig(hidden_size=4, intermediate_size=8, num_attention_heads=2,
                                         num_hidden_layers=2, image_size=32, patch_size=8, projection_dim=4)
        crop = 32
    elif size == "full":
        unet = I2VGenXLUNet()  # the class defaults are the real 1.42 B-parameter UNet
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=768,
        )
        text_config = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                           num_hidden_layers=24, projection_dim=1024, hidden_act="gelu")
        vision_config = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_attention_heads=16,
                                         num_hidden_layers=32, image_size=224, patch_size=14,
                                         projection_dim=1024, hidden_act="gelu")
        crop = 224
    else:
        raise ValueError(f"unknown size {size!r}")

    _write_byte_level_clip_vocab(vocab_dir)
    tokenizer = CLIPTokenizer(str(vocab_dir / "vocab.json"), str(vocab_dir / "merges.txt"), model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=77,
                                                bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id, **text_config))
    return dict(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=CLIPVisionModelWithProjection(vision_config),
        feature_extractor=CLIPImageProcessor(crop_size={"height": crop, "width": crop},
                                             size={"shortest_edge": crop}),
        scheduler=DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False,
                                timestep_spacing="leading", rescale_betas_zero_snr=True),
    )


def build_pipeline(size: str = "tiny"):
    """Return an in-memory ``I2VGenXLPipeline`` with random weights."""
    from diffusers import I2VGenXLPipeline

    with tempfile.TemporaryDirectory() as vocab_dir:
        return I2VGenXLPipeline(**_components(size, Path(vocab_dir)))


def build_and_save(output: Path, size: str = "tiny", force: bool = False, dtype: str = "float32",
                   device: str = "cpu") -> bool:
    """Save a pipeline to ``output``; returns False when a complete one is already there."""
    import torch

    if (output / COMPLETE_MARKER).exists() and not force:
        return False
    # Built on ``device``: on a GPU the random initialisation of 2.5 B parameters is quick.
    with torch.device(device):
        pipeline = build_pipeline(size)
    pipeline.to(dtype=getattr(torch, dtype))
    staging = output.with_name(output.name + ".partial")
    pipeline.save_pretrained(staging)
    # Move into place only once complete, so an interrupted build never looks finished.
    if output.exists():
        import shutil

        shutil.rmtree(output)
    staging.rename(output)
    return True
