"""The web UI at ``/ui``: a Gradio page that is one more client of the job layer (DESIGN.md).

It signs in with the API's keys, submits through ``JobService`` under the key's name and rate
budget, and streams the job's events, so UI work shows in the same jobs, limits and logs as API
work. Nothing below the HTTP edge imports it; only ``gateway/app.py`` mounts it."""

import os

# Before gradio is imported anywhere: no usage reports leave the machine.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
