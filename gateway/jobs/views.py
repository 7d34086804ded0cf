"""What callers see of a job: the REST body (and the webhook payload, which is the same view)."""

from __future__ import annotations

from datetime import datetime, timezone

from gateway.generation.outputs import OutputStore
from gateway.jobs.queue import Place
from gateway.jobs.records import Job
from gateway.schemas import (
    DeliveryAttemptView,
    JobErrorView,
    JobProgressView,
    JobResponse,
    JobStatus,
    WebhookEvent,
    WebhookView,
)

JOBS_PATH = "/api/v1/jobs"


def _when(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=timezone.utc)


class JobViews:
    def __init__(self, outputs: OutputStore) -> None:
        self.outputs = outputs

    def job(self, job: Job, place: Place | None = None) -> JobResponse:
        """The job as callers see it; ``place`` (from ``JobService.place``) adds its queue position and ETA."""
        progress = None
        if job.progress is not None and job.progress.total > 0:
            progress = JobProgressView(step=job.progress.step, total=job.progress.total,
                                       fraction=round(job.progress.step / job.progress.total, 4))
        error = None
        if job.status is JobStatus.failed:
            error = JobErrorView(status=job.error_status or 500, message=job.message)
        webhook = None
        if job.webhook is not None:
            webhook = WebhookView(
                url=job.webhook.url, events=[event.value for event in job.webhook.events],
                state=job.webhook.state.value, attempts=[
                    DeliveryAttemptView(at=_when(a.at), event=(a.event or WebhookEvent.completed).value,
                                        status_code=a.status_code, error=a.error, duration_ms=a.duration_ms)
                    for a in job.webhook.attempts])
        return JobResponse(
            job_id=job.id, status=job.status, message=job.message,
            status_url=f"{job.base_url}{JOBS_PATH}/{job.id}", created_at=_when(job.created_at),
            started_at=_when(job.started_at), finished_at=_when(job.finished_at), progress=progress,
            result=None if job.result is None else job.result.response(self.outputs, job.base_url),
            error=error, attempts=job.attempts, lost_workers=job.lost_workers, webhook=webhook,
            queue_position=place.queue_position if place else None, eta_s=place.eta_s if place else None)
