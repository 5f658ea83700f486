"""Configuration: one validated, immutable ``Settings`` object, built once and passed down.

Sources, strongest first: keyword arguments, environment variables (``BACKBEAT_*``),
defaults. Nothing here is global; every component receives the ``Settings`` it runs with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from backbeat.errors import ConfigError
from backbeat.retry import RetryPolicy
from backbeat.store import check_url
from backbeat.types import Retention

DEFAULT_URL = "sqlite:///backbeat.db"
DEFAULT_QUEUE = "default"
RESERVED_QUEUE_CHARS = frozenset(",\x00")
MAX_NAME = 200
"""Longest queue or task name."""
MAX_KEY = 500
"""Longest schedule key or dedup key (an event's key too; its id at most 200)."""
MAX_SECONDS = 100 * 365.25 * 86400
"""Longest interval, delay or SLA: 100 years, so every time stays one that can be shown."""


def seconds(value: float | int | timedelta, what: str, *, allow_zero: bool = True) -> float:
    """A duration given as seconds or ``timedelta``, validated, in seconds."""
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    else:
        result = float(value)
    if result < 0 or (result == 0 and not allow_zero) or result != result:
        raise ConfigError(f"{what} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return result


def check_text(value: object, what: str, *, limit: int, error: type[Exception] = ConfigError) -> str:
    """A name or key as every store keeps it: a non-empty string of at most ``limit``
    characters, without NUL bytes (PostgreSQL text cannot hold one) and valid Unicode (no
    lone surrogate, which no store can encode). Raises ``error`` naming ``what``."""
    if not isinstance(value, str) or not value:
        raise error(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise error(f"{what} is {len(value):,} characters, over the limit of {limit:,}: {value[:40]!r}...")
    if "\x00" in value:
        raise error(f"{what} must not contain NUL bytes, got {value!r}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise error(f"{what} is not valid Unicode (it holds a lone surrogate), got {value!r}") from None
    return value


def check_queue_name(name: object) -> str:
    if isinstance(name, str) and RESERVED_QUEUE_CHARS & set(name):
        raise ConfigError(f"queue name must be a non-empty string without commas or NUL bytes, got {name!r}")
    return check_text(name, "queue name", limit=MAX_NAME)


def keys_from_env(env: Mapping[str, str], kind: str) -> dict[str, Any]:
    """``<kind>_key`` and ``previous_<kind>_keys`` from ``BACKBEAT_<KIND>_KEY`` or
    ``BACKBEAT_<KIND>_KEYS="current,previous,..."`` (one of the two); ``kind`` is
    ``secret`` or ``signing``."""
    name = f"BACKBEAT_{kind.upper()}_KEY"
    single, several = env.get(name), env.get(f"{name}S")
    if single and several:
        raise ConfigError(f"both {name} and {name}S are set: set one (for rotation, {name}S=new,old and unset {name})")
    if single:
        return {f"{kind}_key": single}
    if not several:
        return {}
    keys = [k.strip() for k in several.split(",")]
    if not all(keys):
        raise ConfigError(f"{name}S has an empty key: give comma-separated keys, the current one first")
    return {f"{kind}_key": keys[0], f"previous_{kind}_keys": tuple(keys[1:])}


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerSettings:
    concurrency: int = 10
    """Job slots in one worker process: async tasks on the loop, sync tasks in threads."""
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    lease: float = 30.0
    """Seconds a claimed job stays owned without a heartbeat; after that it is reclaimed."""
    heartbeat: float | None = None
    """Seconds between heartbeats; default a third of the lease."""
    claim_batch: int = 64
    """Most jobs claimed in one store round trip."""
    prefetch_window: float = 0.05
    """Claim ahead of free slots about this many seconds of work per slot, judged from the
    measured run time: short jobs are claimed in batches, long ones one per free slot (so
    a slow job never waits in one worker while another sits idle). 0 disables."""
    shutdown_grace: float = 30.0
    """On SIGTERM, how long running jobs get to finish before their leases are handed back."""
    timeout_grace: float = 5.0
    """After a sync task's timeout, how long its thread gets to stop before the process recycles."""
    maintenance_interval: float = 5.0
    """Seconds between rescues of expired leases (and, less often, pruning)."""
    idle_poll: float = 0.5
    """Longest wait between checks for new work when the store cannot signal it."""

    def __post_init__(self) -> None:
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError(f"concurrency must be an integer >= 1, got {self.concurrency!r}")
        if not self.queues:
            raise ConfigError("a worker needs at least one queue")
        for queue in self.queues:
            check_queue_name(queue)
        seconds(self.lease, "lease", allow_zero=False)
        if self.heartbeat is not None and not 0 < self.heartbeat < self.lease:
            raise ConfigError(f"heartbeat ({self.heartbeat} s) must be > 0 and shorter than the lease ({self.lease} s)")
        if self.claim_batch < 1:
            raise ConfigError("claim_batch must be >= 1")

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat if self.heartbeat is not None else self.lease / 3


@dataclass(frozen=True, kw_only=True, slots=True)
class SchedulerSettings:
    poll: float = 1.0
    """Longest sleep between looks for due schedules (a schedule added or changed by
    another process is seen within this)."""
    batch: int = 500
    """Most schedules fired per store round trip."""
    repair_interval: float = 10.0
    """Seconds between checks for runs whose job disappeared."""
    deadline_dispatch: bool = True
    """Order the jobs of SLA schedules by deadline (nearest to breach first); off: by due time."""

    def __post_init__(self) -> None:
        seconds(self.poll, "scheduler poll", allow_zero=False)
        seconds(self.repair_interval, "repair_interval", allow_zero=False)
        if self.batch < 1:
            raise ConfigError("scheduler batch must be >= 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class AutopilotSettings:
    period: float = 5.0
    """Seconds between rounds (measure, decide, act)."""
    window: float = 30.0
    """Seconds of finished jobs a round measures demand over."""
    target_utilisation: float = 0.75
    """Share of the job slots the demand may keep busy (the rest absorbs bursts)."""
    down_after: int = 6
    """Rounds that must agree before one worker is taken away (no flapping)."""

    def __post_init__(self) -> None:
        seconds(self.period, "autopilot period", allow_zero=False)
        seconds(self.window, "autopilot window", allow_zero=False)
        if not 0 < self.target_utilisation <= 1:
            raise ConfigError(f"target_utilisation must be in (0, 1], got {self.target_utilisation!r}")
        if self.down_after < 1:
            raise ConfigError("autopilot down_after must be >= 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    url: str = DEFAULT_URL
    max_payload_bytes: int = 1_000_000
    """Largest encoded arguments (and result) of one job."""
    default_retries: int = 3
    """Retries of a task that declares none (Celery's default too)."""
    send_timeout: float = 30.0
    """Seconds ``emit`` (and ``enqueue`` over a broker) keeps retrying an unreachable broker
    or store before raising ``EmitError``."""
    secret_key: str | None = field(default=None, repr=False)
    """``BACKBEAT_SECRET_KEY`` (or the first of ``BACKBEAT_SECRET_KEYS``): seals the values
    of secret arguments and event fields (``backbeat.secrets``), and keys the hashes that
    name rate-limit buckets (so a bucket built from a token never stores the token, nor a
    hash anyone could test guesses against)."""
    previous_secret_keys: tuple[str, ...] = field(default=(), repr=False)
    """The rest of ``BACKBEAT_SECRET_KEYS="new,old,..."``: keys that still open what they
    sealed, and seal nothing new (key rotation)."""
    signing_key: str | None = field(default=None, repr=False)
    """``BACKBEAT_SIGNING_KEY`` (or the first of ``BACKBEAT_SIGNING_KEYS``): when set, every
    job payload and every event sent over a broker is signed with it (HMAC-SHA256), and
    workers and event consumers refuse what no known key signed (``backbeat.signing``)."""
    previous_signing_keys: tuple[str, ...] = field(default=(), repr=False)
    """The rest of ``BACKBEAT_SIGNING_KEYS="new,old,..."``: keys whose signatures are still
    accepted (key rotation)."""
    retention: Retention = field(default_factory=Retention)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    autopilot: AutopilotSettings = field(default_factory=AutopilotSettings)

    def __post_init__(self) -> None:
        check_url(self.url)
        if not isinstance(self.max_payload_bytes, int) or self.max_payload_bytes < 1:
            raise ConfigError(f"max_payload_bytes must be a positive integer, got {self.max_payload_bytes!r}")
        if not isinstance(self.default_retries, int) or self.default_retries < 0:
            raise ConfigError(f"default_retries must be an integer >= 0, got {self.default_retries!r}")
        seconds(self.send_timeout, "send_timeout")
        for kind in ("secret", "signing"):
            current, previous = getattr(self, f"{kind}_key"), getattr(self, f"previous_{kind}_keys")
            if current is not None and (not isinstance(current, str) or not current):
                raise ConfigError(f"{kind}_key must be a non-empty string")
            if not isinstance(previous, tuple) or not all(isinstance(k, str) and k for k in previous):
                raise ConfigError(f"previous_{kind}_keys must be a tuple of non-empty strings")
            if previous and current is None:
                raise ConfigError(
                    f"previous_{kind}_keys need a current {kind}_key (the first of BACKBEAT_{kind.upper()}_KEYS)"
                )

    def with_worker(self, **changes: Any) -> Settings:
        return replace(self, worker=replace(self.worker, **changes))

    @classmethod
    def build(cls, url: str | None = None, env: Mapping[str, str] | None = None, **kwargs: Any) -> Settings:
        """Settings from keyword arguments, then ``BACKBEAT_*`` environment variables, then defaults."""
        env = os.environ if env is None else env
        url = url or env.get("BACKBEAT_URL") or DEFAULT_URL
        for kind in ("secret", "signing"):
            if f"{kind}_key" not in kwargs:
                kwargs.update(keys_from_env(env, kind))
        if "max_payload_bytes" not in kwargs and env.get("BACKBEAT_MAX_PAYLOAD_BYTES"):
            raw = env["BACKBEAT_MAX_PAYLOAD_BYTES"]
            try:
                kwargs["max_payload_bytes"] = int(raw)
            except ValueError:
                raise ConfigError(f"BACKBEAT_MAX_PAYLOAD_BYTES must be an integer, got {raw!r}") from None
        return cls(url=url, **kwargs)
