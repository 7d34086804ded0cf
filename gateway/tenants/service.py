"""``KeyService``: who a presented secret is, the admin actions on keys (each one audited),
quotas, and the usage ledger the job store reports ended jobs to.

Nothing is cached between requests: every sign-in with a stored key reads it from the store
(one lookup in Redis, one indexed read in SQLite), so a revocation through one replica is seen
by every other on its next request."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import time
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from gateway import metrics
from gateway.config import Settings
from gateway.errors import (
    InvalidFieldError,
    KeyNotFoundError,
    QuotaExceededError,
    RateLimitedError,
    ReadOnlyKeyError,
    UnauthorizedError,
)
from gateway.generation.results import VideoResult
from gateway.jobs.records import Job
from gateway.jobs.store import JobStore
from gateway.schemas import JobStatus
from gateway.tenants.records import (
    CALLER_SCOPES,
    VISIBLE_CHARS,
    ApiKey,
    KeySource,
    Scope,
    SecretRef,
    hash_secret,
    looks_like_stored_key,
    new_secret,
)
from gateway.tenants.schemas import KeyCreate, KeyUpdate, KeyUsage, KeyView, QuotaState, UsageDay
from gateway.tenants.store import AuditEntry, KeyStore
from gateway.tenants.usage import (
    UsageCounts,
    day_of,
    days_between,
    generation_usage,
    month_start,
    next_day_start,
    next_month_start,
)

logger = logging.getLogger("gateway.tenants")
ADMIN_CALLER = "admin"  # the caller name of I2V_ADMIN_TOKEN
TOUCH_EVERY_S = 30.0  # last-used times are written at most this often per key and replica
ENV_PREFIX = "env:"  # ids of configured keys in the admin API: env:<name>


@dataclass(frozen=True)
class Identity:
    """A caller the HTTP edge resolved to something other than a plain configured key."""

    caller: str
    scopes: frozenset[Scope]
    key: ApiKey | None = None  # a stored key: its limits and quotas apply


def _utc(at: float | None) -> dt.datetime | None:
    return None if at is None else dt.datetime.fromtimestamp(at, dt.timezone.utc)


def key_view(key: ApiKey, now: float | None = None) -> KeyView:
    refusal = key.refusal(now)
    status = "active" if refusal is None else ("revoked" if key.revoked_at is not None else "expired")
    return KeyView(id=key.id, name=key.name, owner=key.owner, source=KeySource.store, read_only=False, status=status,
                   prefix=key.prefix, scopes=key.scopes, created_at=_utc(key.created_at),
                   expires_at=_utc(key.expires_at), last_used_at=_utc(key.last_used_at),
                   revoked_at=_utc(key.revoked_at), rotated_at=_utc(key.rotated_at), limits=key.limits,
                   quotas=key.quotas)


def configured_key_names(settings: Settings) -> dict[str, KeySource]:
    """The configured keys' names and where each comes from (the file, else the environment)."""
    in_file: set[str] = set()
    if settings.api_keys_file is not None:
        for line in settings.api_keys_file.read_text().splitlines():
            name, separator, _ = line.strip().partition("=")
            if separator and not line.strip().startswith("#"):
                in_file.add(name.strip())
    return {name: KeySource.file if name in in_file else KeySource.environment for name in settings.api_keys}


@dataclass
class KeyService:
    settings: Settings
    store: KeyStore
    jobs: JobStore
    _touched: dict[str, float] = field(default_factory=dict)

    # --- who is calling ---

    async def authenticate(self, presented: str) -> Identity | None:
        """The identity of the admin token or a stored key's secret; None for anything else.
        ``UnauthorizedError`` for a known key that is revoked, expired or rotated out."""
        admin = self.settings.admin_token
        if admin is not None and hmac.compare_digest(presented.encode(), admin.get_secret_value().encode()):
            return Identity(ADMIN_CALLER, frozenset({Scope.admin}))
        if not looks_like_stored_key(presented):
            return None
        ref = await self.store.find_secret(hash_secret(presented))
        if ref is None:
            return None
        now = time.time()
        if ref.valid_until is not None and now >= ref.valid_until:
            raise UnauthorizedError("this secret was replaced by a rotation and its overlap has ended")
        key = await self.store.get_key(ref.key_id)
        if key is None:
            return None
        refusal = key.refusal(now)
        if refusal is not None:
            raise UnauthorizedError(refusal)
        if now - self._touched.get(key.id, 0.0) >= TOUCH_EVERY_S:
            self._touched[key.id] = now
            await self.store.touch(key.id, now)
        return Identity(key.id, frozenset(key.scopes), key)

    # --- admin actions ---

    async def audit(self, actor: str, action: str, client_ip: str | None, target: str | None = None,
                    **detail: object) -> None:
        await self.store.append_audit(AuditEntry(at=time.time(), actor=actor, action=action, target=target,
                                                 client_ip=client_ip, detail=detail))

    async def create(self, body: KeyCreate) -> tuple[ApiKey, str]:
        secret = new_secret()
        key = ApiKey(name=body.name, owner=body.owner, prefix=secret[:VISIBLE_CHARS],
                     scopes=list(dict.fromkeys(body.scopes)),
                     expires_at=None if body.expires_at is None else body.expires_at.timestamp(),
                     limits=body.limits, quotas=body.quotas)
        await self.store.save_key(key)
        await self.store.save_secret(hash_secret(secret), SecretRef(key_id=key.id))
        return key, secret

    async def stored(self, key_id: str) -> ApiKey:
        key = None if key_id.startswith(ENV_PREFIX) else await self.store.get_key(key_id)
        if key is None:
            if key_id.startswith(ENV_PREFIX) and key_id[len(ENV_PREFIX):] in self.settings.api_keys:
                raise ReadOnlyKeyError(f"key '{key_id}' comes from the configuration: change it there and restart")
            raise KeyNotFoundError(f"no API key '{key_id}'")
        return key

    async def usable(self, key_id: str) -> Identity | None:
        """The identity of a stored key that is accepted now (neither revoked nor expired), for a
        caller already signed in by its id (the web UI's sessions); None otherwise."""
        key = None if key_id.startswith(ENV_PREFIX) else await self.store.get_key(key_id)
        if key is None or key.refusal() is not None:
            return None
        return Identity(key.id, frozenset(key.scopes), key)

    async def update(self, key_id: str, body: KeyUpdate) -> tuple[ApiKey, dict]:
        key = await self.stored(key_id)
        if key.revoked_at is not None:
            raise InvalidFieldError(f"key '{key_id}' is revoked; create a new one")
        changes = body.model_dump(exclude_unset=True)
        if "expires_at" in changes:
            changes["expires_at"] = None if body.expires_at is None else body.expires_at.timestamp()
        for name in ("name", "owner", "scopes"):
            if name in changes and changes[name] is None:
                raise InvalidFieldError(f"{name} cannot be null")
        if changes.get("scopes"):
            changes["scopes"] = list(dict.fromkeys(changes["scopes"]))
        for name in ("limits", "quotas"):  # null clears them
            if name in changes and changes[name] is None:
                changes[name] = {}
        updated = ApiKey.model_validate({**key.model_dump(), **changes})
        await self.store.save_key(updated)
        return updated, body.model_dump(mode="json", exclude_unset=True)

    async def revoke(self, key_id: str) -> ApiKey:
        key = await self.stored(key_id)
        if key.revoked_at is None:
            key = key.model_copy(update={"revoked_at": time.time()})
            await self.store.save_key(key)
        return key  # its secrets still point to it, so a caller hears "revoked", not "invalid token"

    async def rotate(self, key_id: str, overlap_s: float) -> tuple[ApiKey, str]:
        key = await self.stored(key_id)
        if key.refusal() is not None:
            raise InvalidFieldError(f"key '{key_id}' is {key_view(key).status}; create a new one")
        secret, now = new_secret(), time.time()
        new_hash = hash_secret(secret)
        await self.store.save_secret(new_hash, SecretRef(key_id=key.id))
        # The current secrets keep working for the overlap (one already in an earlier overlap
        # keeps its earlier end); with no overlap they stop now.
        await self.store.end_secrets(key.id, now + overlap_s if overlap_s > 0 else None, keep=new_hash)
        key = key.model_copy(update={"prefix": secret[:VISIBLE_CHARS], "rotated_at": now})
        await self.store.save_key(key)
        return key, secret

    async def views(self) -> list[KeyView]:
        """Every key: the configured ones (read-only) first, then the stored ones, oldest first."""
        configured = [KeyView(id=ENV_PREFIX + name, name=name, source=source, read_only=True, status="active",
                              scopes=sorted(CALLER_SCOPES))
                      for name, source in configured_key_names(self.settings).items()]
        now = time.time()
        return configured + [key_view(key, now) for key in await self.store.list_keys()]

    async def view(self, key_id: str) -> KeyView:
        for view in await self.views() if key_id.startswith(ENV_PREFIX) else []:
            if view.id == key_id:
                return view
        return key_view(await self.stored(key_id))

    # --- quotas ---

    async def quota_states(self, key: ApiKey, now: float | None = None) -> list[QuotaState]:
        """Each quota the key has: its limit, what the current day or month used, when it resets."""
        quotas = key.quotas.model_dump(exclude_none=True)
        if not quotas:
            return []
        now = time.time() if now is None else now
        today = dt.date.fromisoformat(day_of(now))
        month = (await self.store.usage(days_between(month_start(today), today), key.id)).get(key.id, {})
        states = []
        for name, limit in quotas.items():
            measure, _, period = name.partition("_per_")
            days = [today.isoformat()] if period == "day" else list(month)
            used = sum(getattr(month[day], measure) for day in days if day in month)
            resets = next_day_start(now) if period == "day" else next_month_start(now)
            states.append(QuotaState(quota=name, limit=limit, used=round(used, 6),
                                     resets_at=dt.datetime.fromtimestamp(resets, dt.timezone.utc)))
        return states

    async def admit(self, identity: Identity) -> None:
        """Refuse work past one of the key's quotas (429 naming it, Retry-After at its reset) or
        past its own queue limit. Checked when work is submitted, against work already ended:
        jobs admitted earlier may take a key a little past a quota."""
        key = identity.key
        if key is None:
            return
        now = time.time()
        for state in await self.quota_states(key, now):
            if state.used >= state.limit:
                retry_after = max(1, int(state.resets_at.timestamp() - now) + 1)
                raise QuotaExceededError(
                    f"quota {state.quota} of key '{key.name}' is used up ({state.used:g} of {state.limit:g}); "
                    f"it resets at {state.resets_at.isoformat().replace('+00:00', 'Z')}",
                    {"Retry-After": str(retry_after)})
        if key.limits.max_queued is not None and await self.jobs.count_queued(key.id) >= key.limits.max_queued:
            raise RateLimitedError(f"key '{key.name}' already has {key.limits.max_queued} queued jobs; "
                                   "wait for some to start", {"Retry-After": "10"})

    # --- the usage ledger ---

    async def record(self, caller: str, counts: UsageCounts, at: float | None = None) -> None:
        """Add one ended generation's work to the caller's day; a store failure is logged, not
        raised (the work is done and answered either way)."""
        try:
            await self.store.add_usage(caller, day_of(time.time() if at is None else at), counts)
        except Exception as exc:  # noqa: BLE001 - usage must never fail the generation it counts
            logger.warning("usage of %s not recorded: %s", caller, exc)
        metrics.count_key_work(caller, counts.model_dump())

    async def job_ended(self, job: Job) -> None:
        """The job store's hook: called once, by the replica whose write ended the job."""
        if job.status is JobStatus.succeeded and job.result is not None:
            counts = result_usage(job.result, job.params.steps)
        elif job.status is JobStatus.failed:
            counts = generation_usage(succeeded=False)
        else:  # cancelled: asked for, nothing made, not the gateway's failure
            counts = UsageCounts(requests=1)
        await self.record(job.owner, counts, job.finished_at)

    async def usage(self, since: dt.date, until: dt.date, caller: str | None = None) \
            -> dict[str, dict[str, UsageCounts]]:
        if until < since or (until - since).days > 366:
            raise InvalidFieldError("since must be on or before until, at most 366 days apart")
        return await self.store.usage(days_between(since, until), caller)

    async def report(self, caller: str, days: dict[str, UsageCounts], name: str | None = None) -> KeyUsage:
        """One caller's usage report from its ``days`` (``usage``): totals, the days in order, and
        its quotas when it is a stored key (what ``/api/v1/usage``, ``/admin/v1/usage`` and the web
        UI show)."""
        totals = sum(days.values(), UsageCounts())
        stored = await self.store.get_key(caller) if caller.startswith("key_") else None
        return KeyUsage(key=caller, name=name or (stored.name if stored else None), totals=totals.rounded(),
                        days=[UsageDay(day=dt.date.fromisoformat(day), **counts.rounded().model_dump())
                              for day, counts in sorted(days.items())],
                        quotas=await self.quota_states(stored) if stored is not None else [])

    async def own_report(self, caller: str, since: dt.date, until: dt.date) -> KeyUsage:
        """``report`` of one caller over ``since``..``until``."""
        found = await self.usage(since, until, caller)
        return await self.report(caller, found.get(caller, {}))

    async def close(self) -> None:
        await self.store.close()


def result_usage(result: VideoResult, steps: int) -> UsageCounts:
    return generation_usage(succeeded=True, cached=result.cached, steps=steps, frames=result.num_frames,
                            width=result.width, height=result.height, model_seconds=result.model_seconds)


def key_service(connection: HTTPConnection) -> KeyService:
    return connection.app.state.services.tenants
