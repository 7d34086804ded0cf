"""scripts/perf_input_data.py writes what perf_analyzer needs for every input of config.pbtxt."""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

from i2v_tools import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "perf_input_data.py"
CONFIG = (REPO_ROOT / "model_repository" / "i2vgen_xl" / "config.pbtxt").read_text()
INPUTS = {name: (dtype, "optional: true" in rest)
          for name, dtype, rest in re.findall(r'\{ name: "(\w+)", data_type: (\w+), dims: \[ 1 \](.*?)\}',
                                              CONFIG.split("output [")[0])}
JSON_TYPES = {"TYPE_INT32": int, "TYPE_INT64": int, "TYPE_FP32": float, "TYPE_STRING": str}


def write(tmp_path: Path, *args: str) -> dict:
    output = tmp_path / "input.json"
    subprocess.run([sys.executable, str(SCRIPT), *args, "-o", str(output)], check=True, capture_output=True)
    [request] = json.loads(output.read_text())["data"]
    return request


def test_every_input_with_its_type_and_the_image_length_prefixed(tmp_path: Path) -> None:
    assert len(INPUTS) == 10, INPUTS
    image = b"\xff\xd8\xff\xe0 not really a JPEG"
    (tmp_path / "photo.jpg").write_bytes(image)
    request = write(tmp_path, "--image", str(tmp_path / "photo.jpg"), "--negative-prompt", "blurry",
                    "--height", "256", "--width", "320", "--frames", "8", "--steps", "4", "--seed", "7",
                    "--step-cache-interval", "2")
    assert set(request) == set(INPUTS)
    # The b64 value is the BYTES tensor on the wire: 4-byte little-endian length, then the bytes.
    wire = base64.b64decode(request["IMAGE"]["b64"])
    assert struct.unpack("<I", wire[:4])[0] == len(image) and wire[4:] == image
    for name, (dtype, _) in INPUTS.items():
        if name != "IMAGE":
            [value] = request[name]
            assert type(value) is JSON_TYPES[dtype], (name, value)
    assert (request["HEIGHT"], request["WIDTH"], request["NUM_FRAMES"], request["SEED"]) == ([256], [320], [8], [7])


def test_optional_inputs_left_out(tmp_path: Path) -> None:
    request = write(tmp_path, "--seed", "-1")
    required = {name for name, (_, optional) in INPUTS.items() if not optional}
    assert set(request) == required
    wire = base64.b64decode(request["IMAGE"]["b64"])
    assert wire[4:12] == b"\x89PNG\r\n\x1a\n" and struct.unpack("<I", wire[:4])[0] == len(wire) - 4
