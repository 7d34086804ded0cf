"""The API document's example with the installed SDK (``pip install ./client``; set-up does it):

    python client/examples/generate_video.py photo.jpg out.mp4 [--resolution 256p --frames 8 --steps 4]

I2V_API_URL (default http://127.0.0.1:8000) and I2V_API_TOKEN select the server.
"""

import argparse
import sys

from i2v_client import Client, I2VError

parser = argparse.ArgumentParser()
parser.add_argument("image", nargs="?", default="input.jpg")
parser.add_argument("output", nargs="?", default="output.mp4")
parser.add_argument("--prompt", default="A cat walking in the garden")
parser.add_argument("--resolution", default="512p")
parser.add_argument("--frames", type=int, default=16)
parser.add_argument("--steps", type=int, default=50)
args = parser.parse_args()

with Client() as client:
    try:
        job = client.submit(args.image, args.prompt, resolution=args.resolution, num_frames=args.frames, fps=8,
                            steps=args.steps, guidance_scale=9.0)
        job = client.wait(job, progress=lambda p: print(f"{p.status} {p.step or ''}/{p.total or ''}", flush=True))
    except I2VError as error:
        print(f"failed ({error.status}): {error.message}")
        sys.exit(1)
    if job.result is None:
        print(f"job {job.status.value}: {job.error.message if job.error else job.message}")
        sys.exit(1)
    result = job.result
    print(f"{result.message}: {result.video_url} ({result.inference_time:.1f} s, seed {result.seed})")
    client.download(result, args.output)
    print(f"saved {args.output}")
