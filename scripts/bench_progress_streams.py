"""What a job's progress stream costs tritonserver's memory (issue 23's soak found it growing).

Runs jobs the way the gateway's workers do against a fresh tritonserver on the tiny model, and
reads tritonserver's anonymous memory (``RssAnon``, its Python stubs left out) before and after
each round, in three ways side by side, interleaved:

- ``plain``: the video alone, no progress stream;
- ``good order``: watched as the gateway does now (the stream closes by itself when the request ends);
- ``cancelled``: watched as it did before: the stream cancelled after its last answer.

    python scripts/bench_progress_streams.py --jobs 300 --rounds 2   # about 4 minutes on 2 CPU cores

Writes docs/benchmarks/cpu_progress_streams.json (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from gateway.generation import triton_client
from gateway.generation.triton_client import TritonClient
from gateway.generation.triton_inputs import MODEL_NAME, PROGRESS_MODEL_NAME, VideoRequest
from i2v_tools import REPO_ROOT
from i2v_tools.load import is_python_stub, process_tree, read_processes
from i2v_tools.sample_inputs import noise_png
from i2v_tools.servers import TritonServer
from i2v_tools.tiny_model import TINY_MODEL, build_and_save

IMAGE = noise_png(96, 64)


def server_anon_mib(triton: TritonServer) -> float:
    return read_processes([pid for pid in process_tree(triton.server_pid) if not is_python_stub(pid)]).anon_mib


async def one_job(client: TritonClient, request_id: str, watched: bool) -> None:
    video = VideoRequest(image=IMAGE, prompt="a cat", num_frames=8, num_inference_steps=1, height=64, width=64,
                         seed=1)
    if not watched:
        await client.generate(video, request_id=request_id)
        return
    stream = client.watch_progress(request_id)
    await anext(stream)  # acknowledged before the request is sent, as the workers wait for it
    made = asyncio.ensure_future(client.generate(video, request_id=request_id))
    async for _ in stream:
        pass
    await made


async def still_cancelled(responses) -> bool:  # the way before: never waited for, always cancelled
    return False


async def round_of(way: str, client: TritonClient, triton: TritonServer, jobs: int, tag: str) -> dict:
    limit = asyncio.Semaphore(4)  # the gateway's default I2V_JOB_WORKERS

    async def job(index: int) -> None:
        async with limit:
            await one_job(client, f"{tag}-{index}", way != "plain")

    patch = mock.patch.object(triton_client, "_ended_in_good_order", still_cancelled) if way == "cancelled" \
        else contextlib.nullcontext()
    before, started = server_anon_mib(triton), time.monotonic()
    with patch:
        await asyncio.gather(*(job(i) for i in range(jobs)))
    grown = server_anon_mib(triton) - before
    return {"way": way, "jobs": jobs, "seconds": round(time.monotonic() - started, 1),
            "anon_growth_mib": round(grown, 2), "kb_per_job": round(1024 * grown / jobs, 2)}


async def bench(jobs: int, rounds: int) -> list[dict]:
    build_and_save(TINY_MODEL)
    with tempfile.TemporaryDirectory() as folder:
        triton = TritonServer(Path(folder), {"I2V_MODEL_PATH": str(TINY_MODEL)}, cwd=REPO_ROOT).start().wait_ready()
        client = TritonClient(triton.grpc_url, MODEL_NAME, 120, progress_model=PROGRESS_MODEL_NAME)
        try:
            for way in ("cancelled", "good order", "plain"):  # warm-up: first calls allocate for good
                await round_of(way, client, triton, 40, f"warm-{way}")
            rows = []
            for number in range(rounds):
                for way in ("plain", "good order", "cancelled"):
                    rows.append({**await round_of(way, client, triton, jobs, f"{way}-{number}"), "round": number})
                    print(rows[-1], flush=True)
            return rows
        finally:
            await client.close()
            triton.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs a round and way")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks" / "cpu_progress_streams.json")
    args = parser.parse_args()
    rows = asyncio.run(bench(args.jobs, args.rounds))
    print("\n| way | jobs a round | tritonserver RssAnon growth KB a job, each round | median |")
    print("|---|---|---|---|")
    for way in ("plain", "good order", "cancelled"):
        mine = [row["kb_per_job"] for row in rows if row["way"] == way]
        print(f"| {way} | {args.jobs} | {', '.join(f'{kb:g}' for kb in mine)} | {statistics.median(mine):g} |")
    args.out.write_text(json.dumps({"jobs": args.jobs, "rounds": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
