"""Pure pieces: retry backoff, ids, the manual clock, settings and URLs."""

import asyncio
import os
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from backbeat import ids
from backbeat.clock import ManualClock, iso
from backbeat.config import Settings, WorkerSettings
from backbeat.errors import ConfigError, RateLimited, Retry
from backbeat.ids import uuid7
from backbeat.retry import RetryPolicy, retry_delay
from backbeat.store import check_url, open_store
from backbeat.store.memory import MemoryStore
from backbeat.store.sqlite import SQLiteStore


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    policy = RetryPolicy(base=2.0, factor=2.0, cap=60.0, jitter=0.5)
    rng = random.Random(7)
    for attempt, full in [(1, 2.0), (2, 4.0), (3, 8.0), (6, 60.0), (50, 60.0)]:
        delays = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(full * 0.5 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full * 0.3  # jitter spreads retries out


def test_retry_delay_stops_when_attempts_are_used_up() -> None:
    policy = RetryPolicy(jitter=0)
    assert retry_delay(attempts=1, max_attempts=3, policy=policy) == 1.0
    assert retry_delay(attempts=2, max_attempts=3, policy=policy, requested=30) == 30
    assert retry_delay(attempts=3, max_attempts=3, policy=policy) is None


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError, match="factor"):
        RetryPolicy(factor=0.5)


def test_control_flow_exceptions_take_seconds_or_timedelta() -> None:
    assert Retry(in_=timedelta(minutes=1)).in_ == 60
    assert Retry().in_ is None
    assert RateLimited(retry_after=5).retry_after == 5
    with pytest.raises(ValueError, match="negative"):
        Retry(in_=-1)


def test_uuid7_is_a_time_ordered_uuid() -> None:
    a, b = uuid7(1_000), uuid7(2_000)
    parsed = uuid.UUID(a)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert a < b
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a)


def test_ids_of_one_process_increase_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    made = [uuid7() for _ in range(20_000)]  # many per millisecond
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in made[::97])
    monkeypatch.setattr("backbeat.ids.time", SimpleNamespace(time_ns=lambda: 0))  # the clock stepped back to 1970
    after = [uuid7() for _ in range(100)]
    assert made[-1] < after[0] and after == sorted(after)
    monkeypatch.setattr(ids, "_last", ids._compose(5, (1 << 74) - 2))  # a millisecond used up
    assert uuid7() > ids._format(ids._compose(5, (1 << 74) - 1)) and uuid7().startswith("00000000-0006-7")


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_lease_tokens_never_repeat_in_a_process_or_its_forked_child() -> None:
    mine = [ids.token() for _ in range(1000)]
    assert len(set(mine)) == len(mine) and all(re.fullmatch(r"[0-9a-f]{24}", t) for t in mine)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe only, and never run pytest's exit
        try:
            os.write(write, " ".join(ids.token() for _ in range(1000)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode().split()
    os.waitpid(pid, 0)
    parents = [ids.token() for _ in range(1000)]
    assert len(child) == 1000 and len(set(mine + parents + child)) == 3000


def test_iso_is_utc_with_z() -> None:
    assert iso(0.0) == "1970-01-01T00:00:00Z"
    assert iso(None) is None


async def test_manual_clock_wakes_sleepers_only_when_advanced() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.now())

    tasks = [asyncio.create_task(sleeper(s)) for s in (5, 10)]
    await asyncio.sleep(0)
    assert clock.next_deadline() == clock.now() + 5
    clock.advance(4)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(1)
    await asyncio.wait_for(tasks[0], 1)
    assert woke == [clock.now()]
    event = asyncio.Event()
    waiter = asyncio.create_task(clock.wait(event, 100))
    await asyncio.sleep(0)
    event.set()
    assert await asyncio.wait_for(waiter, 1) is True
    clock.advance(10)
    await asyncio.wait_for(tasks[1], 1)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "non-empty"),
        ("backbeat.db", "malformed"),
        ("mysql://localhost/x", "unknown scheme 'mysql'"),
        ("sqlite://", "names no file"),
        ("sqlite:///:memory:", "names no file"),
        ("sqlite:///x.db?synchronous=sometimes", "synchronous"),
        ("sqlite:///x.db?fast=1", "unknown option"),
        ("memory://a/b", "takes only a name"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        check_url(url)


def test_urls_pick_their_store() -> None:
    store = open_store("sqlite:///some/dir/x.db?synchronous=full&poll_ms=2")
    assert isinstance(store, SQLiteStore) and store.path == "some/dir/x.db"
    assert store.options.synchronous == "full" and store.options.poll_ms == 2
    assert isinstance(open_store("sqlite:////abs/x.db"), SQLiteStore)
    assert open_store("memory://same") is open_store("memory://same")
    assert isinstance(open_store("memory://"), MemoryStore)


def test_settings_come_from_arguments_then_environment() -> None:
    env = {"BACKBEAT_URL": "sqlite:///env.db", "BACKBEAT_MAX_PAYLOAD_BYTES": "5000"}
    assert Settings.build(env=env).url == "sqlite:///env.db"
    assert Settings.build("memory://", env=env).url == "memory://"
    assert Settings.build(env=env).max_payload_bytes == 5000
    assert Settings.build(env={}).url == "sqlite:///backbeat.db"
    with pytest.raises(ConfigError, match="BACKBEAT_MAX_PAYLOAD_BYTES must be an integer"):
        Settings.build(env={"BACKBEAT_MAX_PAYLOAD_BYTES": "lots"})


def test_worker_settings_validate() -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        WorkerSettings(concurrency=0)
    with pytest.raises(ConfigError, match="heartbeat"):
        WorkerSettings(lease=5, heartbeat=10)
    with pytest.raises(ConfigError, match="queue name"):
        WorkerSettings(queues=("a,b",))
    assert WorkerSettings(lease=9).heartbeat_interval == 3
