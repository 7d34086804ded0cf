"""Asynchronous jobs: durable records, a worker that runs them, webhooks and the result cache.

``records`` is the data, ``store`` (SQLite) and ``redis_store`` keep it, ``runner`` moves jobs
from queued to a final state, ``webhooks`` tells callers, ``cache`` skips repeated work and
``service`` is what the HTTP routes call.
"""
