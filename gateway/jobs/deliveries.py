"""Webhook deliveries, driven by the store's ``webhook`` index: they survive restarts and are
shared between replicas; each attempt is recorded on the job."""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import httpx

from gateway import metrics
from gateway.config import Settings
from gateway.errors import ApiError, InvalidFieldError
from gateway.jobs.loops import Wake
from gateway.jobs.records import DeliveryAttempt, Job, WebhookState
from gateway.jobs.store import JobStore
from gateway.jobs.views import JobViews
from gateway.jobs.webhooks import check_callback_url, deliver, sign_event
from gateway.schemas import WebhookEvent

logger = logging.getLogger("gateway.jobs")
MAX_PARALLEL_DELIVERIES = 8


class WebhookDeliveries:
    def __init__(self, settings: Settings, store: JobStore, views: JobViews, wake: Wake) -> None:
        self.settings = settings
        self.store = store
        self.views = views
        self.wake = wake
        self._http = httpx.AsyncClient()
        self._tasks: set[asyncio.Task] = set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()

    async def loop(self) -> None:
        limit = asyncio.Semaphore(MAX_PARALLEL_DELIVERIES)
        while True:
            now = time.time()
            for job_id in await self.store.due("webhook", now):
                job, claimed = await self.store.mutate(job_id, functools.partial(self._claim, now=now))
                if claimed and job is not None:
                    await limit.acquire()
                    task = asyncio.create_task(self.deliver(job))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    task.add_done_callback(lambda _: limit.release())
            await self.wake.sleep(0.5)

    def _claim(self, job: Job, now: float) -> Job | None:
        """Mark a due delivery as in progress, long enough for one attempt (a crash retries it)."""
        hook = job.webhook
        if hook is None or hook.due_event() is None or hook.state not in (WebhookState.pending,
                                                                          WebhookState.delivering) \
                or (hook.next_at or 0) > now:
            return None
        claim_until = now + self.settings.webhook_timeout_s + 30
        return job.model_copy(update={"webhook": hook.model_copy(update={
            "state": WebhookState.delivering, "next_at": claim_until})})

    async def deliver(self, job: Job) -> None:
        hook = job.webhook
        event = hook.due_event() if hook is not None else None
        if hook is None or event is None:
            return
        secret = self.settings.webhook_secret
        try:
            if secret is None:  # a replica without the secret: record it rather than send unsigned
                raise InvalidFieldError("webhooks are not configured on this gateway (I2V_WEBHOOK_SECRET)")
            message_id, event_type = message_names(job, event)
            message = sign_event(secret.get_secret_value(), message_id, event_type,
                                 self.views.job(job).model_dump(mode="json"))
            # Checked again at delivery: the name may resolve elsewhere now (DNS rebinding).
            await check_callback_url(hook.url, self.settings.webhook_allow_private)
            attempt = await deliver(self._http, hook.url, message, self.settings.webhook_timeout_s)
        except ApiError as exc:
            attempt = DeliveryAttempt(at=time.time(), error=exc.message, duration_ms=0)
        attempt = attempt.model_copy(update={"event": event})
        metrics.count_delivery(attempt.error)
        updated, _ = await self.store.mutate(job.id, lambda current: self._record(current, attempt, event))
        if updated is not None and updated.webhook is not None:
            logger.info("webhook %s for job %s: attempt %d %s", event.value, job.id, updated.webhook.tries(event),
                        attempt.error or f"delivered ({attempt.status_code})")

    def _record(self, job: Job, attempt: DeliveryAttempt, event: WebhookEvent) -> Job | None:
        hook = job.webhook
        if hook is None:
            return None
        hook = hook.model_copy(update={"attempts": [*hook.attempts, attempt]})
        if hook.due_event() is not event or hook.state is not WebhookState.delivering:
            # A newer message took this one's place while it was sent: that one is due now.
            return job.model_copy(update={"webhook": hook})
        delays = self.settings.webhook_retry_delays_s
        if attempt.error is None:
            state, next_at, due = WebhookState.delivered, None, None
        elif event is WebhookEvent.progress:
            state, next_at, due = WebhookState.pending, None, None  # not retried: the next step's replaces it
        elif hook.tries(event) > len(delays):
            state, next_at, due = WebhookState.failed, None, None
        else:
            state, next_at, due = WebhookState.pending, time.time() + delays[hook.tries(event) - 1], event
        return job.model_copy(update={"webhook": hook.model_copy(update={
            "state": state, "next_at": next_at, "due": due})})


def message_names(job: Job, event: WebhookEvent) -> tuple[str, str]:
    """The Standard Webhooks message id (receivers deduplicate on it) and the event type."""
    if event is WebhookEvent.start:
        return f"{job.id}_start", "job.started"
    if event is WebhookEvent.progress:
        step = job.progress.step if job.progress is not None else 0
        return f"{job.id}_progress_{step}", "job.progress"
    return f"{job.id}_{job.status.value}", f"job.{job.status.value}"
