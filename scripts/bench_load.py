"""Weight loading: time and peak host memory of ``from_pretrained``, with and without accelerate.

Each measurement runs in a fresh Python process, so the RSS high-water mark (``VmHWM``) is the
load's own and no file cache of torch or diffusers imports is shared between runs. Without
``accelerate`` diffusers ignores ``low_cpu_mem_usage=True`` (it logs "Cannot initialize model
with low cpu memory usage") and builds randomly initialised modules before copying the weights
in, holding them twice.

    python scripts/bench_load.py                           # the tiny model, 3 rounds
    python scripts/bench_load.py --model /data/i2vgen-xl --dtype float16 --json load.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from i2v_tools.tiny_model import TINY_MODEL

# Run in the child: imports first (their memory is the baseline), then one load.
_CHILD = r"""
import importlib.util, json, sys, time
import torch
from i2v_model.pipeline import controlled_pipeline_class

def rss_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

path, dtype, low_cpu = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
pipeline_class = controlled_pipeline_class()
before = rss_kib("VmRSS")
started = time.perf_counter()
pipeline_class.from_pretrained(path, torch_dtype=getattr(torch, dtype), low_cpu_mem_usage=low_cpu)
print(json.dumps({"load_s": time.perf_counter() - started, "rss_before_mib": before / 1024,
                  "peak_rss_mib": rss_kib("VmHWM") / 1024,
                  "accelerate": importlib.util.find_spec("accelerate") is not None}))
"""


def measure(model: Path, dtype: str, low_cpu_mem_usage: bool) -> dict:
    completed = subprocess.run([sys.executable, "-c", _CHILD, str(model), dtype, "1" if low_cpu_mem_usage else "0"],
                               capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=TINY_MODEL, help="a from_pretrained folder")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)

    rows = []
    for low_cpu in (False, True):
        runs = [measure(args.model, args.dtype, low_cpu) for _ in range(args.rounds)]
        rows.append({
            "low_cpu_mem_usage": low_cpu,
            "accelerate": runs[0]["accelerate"],
            "load_s_median": round(statistics.median(r["load_s"] for r in runs), 3),
            "rss_before_load_mib": round(statistics.median(r["rss_before_mib"] for r in runs), 1),
            "peak_rss_mib": round(statistics.median(r["peak_rss_mib"] for r in runs), 1),
        })
    for row in rows:
        row["load_peak_over_imports_mib"] = round(row["peak_rss_mib"] - row["rss_before_load_mib"], 1)

    columns = ["low_cpu_mem_usage", "accelerate", "load_s_median", "rss_before_load_mib", "peak_rss_mib",
               "load_peak_over_imports_mib"]
    print(f"from_pretrained({args.model}, {args.dtype}), median of {args.rounds} fresh processes")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "dtype": args.dtype, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
