"""The API document's example, runnable.

    python client/examples/generate_video.py photo.jpg [out.mp4]

I2V_API_URL (default http://localhost:8000) and I2V_API_TOKEN select the server.
"""

import base64
import os
import sys

from i2v_client import I2VClient, I2VError  # pip install -e client (scripts/setup.sh does)

image_path = sys.argv[1] if len(sys.argv) > 1 else "input.jpg"
output_path = sys.argv[2] if len(sys.argv) > 2 else "output.mp4"

with open(image_path, "rb") as f:
    image_base64 = base64.b64encode(f.read()).decode()

client = I2VClient(os.environ.get("I2V_API_URL", "http://localhost:8000"), os.environ.get("I2V_API_TOKEN"))
try:
    result = client.generate_json({
        "image_base64": image_base64,
        "prompt": "A cat walking in the garden",
        "resolution": "512p",
        "num_frames": 16,
        "fps": 8,
        "steps": 50,
        "guidance_scale": 9.0,
    })
except I2VError as error:
    print(f"failed ({error.status}): {error.message}")
    sys.exit(1)

print(f"{result['message']}: {result['video_url']} ({result['inference_time']:.1f} s, seed {result['seed']})")
client.download(result["video_url"], output_path)
print(f"saved {output_path}")
