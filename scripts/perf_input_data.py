"""Write the ``--input-data`` JSON that NVIDIA's perf_analyzer sends to ``i2vgen_xl``.

    python scripts/perf_input_data.py --height 64 --width 64 --frames 8 --steps 2 -o i2v_input.json
    perf_analyzer -m i2vgen_xl -u 127.0.0.1:8011 -i grpc --input-data i2v_input.json ...

The image is the tricky input. perf_analyzer takes a ``{"b64": ...}`` value as the tensor's
bytes exactly as they travel, and a BYTES tensor travels as each element's 4-byte
little-endian length followed by its bytes; without that prefix perf_analyzer reads the PNG
signature as a length ("expecting string of length 3774863615"). Text inputs can stay plain
JSON strings: perf_analyzer adds their prefixes itself. Needs only the standard library and,
without ``--image``, the project's packages (for the noise image).
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
from pathlib import Path


def bytes_element_b64(data: bytes) -> str:
    """One BYTES element as perf_analyzer's ``b64`` wants it: length prefix, then the bytes."""
    return base64.b64encode(struct.pack("<I", len(data)) + data).decode("ascii")


def input_data(image: bytes, prompt: str, *, frames: int, steps: int, guidance: float, height: int, width: int,
               seed: int | None, negative_prompt: str | None, step_cache_interval: int | None = None) -> dict:
    """One request's tensors, without the batch dimension (perf_analyzer adds it with ``-b``)."""
    request: dict = {
        "IMAGE": {"b64": bytes_element_b64(image)},
        "PROMPT": [prompt],
        "NUM_FRAMES": [frames],
        "NUM_INFERENCE_STEPS": [steps],
        "GUIDANCE_SCALE": [guidance],
        "HEIGHT": [height],
        "WIDTH": [width],
    }
    if negative_prompt is not None:
        request["NEGATIVE_PROMPT"] = [negative_prompt]
    if seed is not None:
        request["SEED"] = [seed]
    if step_cache_interval is not None:
        request["STEP_CACHE_INTERVAL"] = [step_cache_interval]
    return {"data": [request]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, help="an encoded image (PNG, JPEG, ...); default: seeded noise PNG")
    parser.add_argument("--prompt", default="a lighthouse in a storm")
    parser.add_argument("--negative-prompt")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--guidance", type=float, default=9.0)
    parser.add_argument("--seed", type=int, default=1, help="fixed seed; -1 leaves SEED out (the model picks one)")
    parser.add_argument("--step-cache-interval", type=int,
                        help="DeepCache-style step caching: deep UNet features every N steps (omitted: the config's)")
    parser.add_argument("-o", "--output", type=Path, help="the JSON file (default: standard output)")
    args = parser.parse_args(argv)

    if args.image is not None:
        image = args.image.read_bytes()
    else:
        from i2v_tools.sample_inputs import noise_png

        image = noise_png(args.width, args.height)
    data = input_data(image, args.prompt, frames=args.frames, steps=args.steps, guidance=args.guidance,
                      height=args.height, width=args.width, seed=None if args.seed < 0 else args.seed,
                      negative_prompt=args.negative_prompt, step_cache_interval=args.step_cache_interval)
    text = json.dumps(data, indent=1) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output} ({len(image)}-byte image, {args.width}x{args.height}, {args.frames} frames, "
              f"{args.steps} steps)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
