"""Build a random-weight I2VGen-XL pipeline offline and save it (see ``i2v_tools.tiny_model``).

Usage: python scripts/build_model.py [--size tiny|full] [--output DIR] [--force]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from i2v_tools import REPO_ROOT
from i2v_tools.tiny_model import FULL_MODEL, TINY_MODEL, build_and_save


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"target folder (default {TINY_MODEL.relative_to(REPO_ROOT)} for tiny, "
                             f"{FULL_MODEL.relative_to(REPO_ROOT)} for full)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder is complete")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="weights as saved (float16 halves the full model to about 5 GB)")
    parser.add_argument("--device", default="cpu", help="where to build, e.g. cuda")
    args = parser.parse_args(argv)
    output = args.output or (TINY_MODEL if args.size == "tiny" else FULL_MODEL)
    started = time.perf_counter()
    built = build_and_save(output, args.size, args.force, args.dtype, args.device)
    verb = "built" if built else "already present:"
    print(f"{args.size} I2VGen-XL {verb} {output} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
