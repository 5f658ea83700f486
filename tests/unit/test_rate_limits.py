"""Rate limits in-process (memory store, manual clock): limits per token, 429 blocks,
concurrency, explain, and the errors a bad declaration gets."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from backbeat import App, ManualClock, RateLimited
from backbeat.cli.sla import explain_data
from backbeat.errors import ConfigError, TaskDefinitionError
from backbeat.ids import uuid7
from backbeat.testing import run_for, run_until_idle

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def app(clock: ManualClock) -> Iterator[App]:
    app = App(f"memory://{uuid7()}", clock=clock, secret_key="test-secret")
    yield app
    app.close()


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


def test_a_limit_per_token_holds_in_every_window(app: App, clock: ManualClock) -> None:
    starts: dict[str, list[float]] = defaultdict(list)
    app.rate_limit("twitter", limit=3, per=10)

    @app.task(name="poll", rate_limit="twitter:{token}")
    def poll(user_id: int, token: str) -> None:
        starts[token].append(clock.now())

    jobs = [poll.enqueue(user_id=i, token=t) for i in range(12) for t in ("abc", "xyz")]
    run_until_idle(app, advance=True)
    assert all(j.status().value == "succeeded" and j.info().attempts == 1 for j in jobs)
    assert len(starts["abc"]) == len(starts["xyz"]) == 12
    for times in starts.values():
        assert max_in_window(times, 10) == 3  # never more than 3 starts in any 10 s
    assert max(starts["abc"]) - START == pytest.approx(30.3)  # 3 per 10 s (+0.1 s slack per window)


def test_rate_limited_blocks_the_bucket_while_other_tokens_flow(app: App, clock: ManualClock) -> None:
    calls: list[tuple[str, float]] = []
    answered = {"abc": False}
    app.rate_limit("twitter", limit=100, per=60)

    @app.task(name="poll", rate_limit="twitter:{token}", retries=0)
    def poll(token: str) -> str:
        calls.append((token, clock.now() - START))
        if token == "abc" and not answered["abc"]:
            answered["abc"] = True
            raise RateLimited(retry_after=5)
        return token

    first = poll.enqueue("abc")
    run_until_idle(app)
    other = [poll.enqueue("xyz") for _ in range(3)]
    blocked = poll.enqueue("abc")
    clock.advance(1)
    run_until_idle(app)
    assert [t for t, _ in calls] == ["abc", "xyz", "xyz", "xyz"]  # abc waits; xyz flows
    assert all(j.result() == "xyz" for j in other)
    assert first.info().attempts == 0 and first.status().value == "scheduled"  # not a failure, no retry used
    run_until_idle(app, advance=True)
    assert sorted(t for t, at in calls if t == "abc" and at >= 5) == ["abc", "abc"]
    assert blocked.result() == "abc" and first.result() == "abc"


def test_concurrency_limit(app: App, clock: ManualClock) -> None:
    app.rate_limit("export", concurrency=1)
    running = {"now": 0, "max": 0}

    @app.task(name="export", rate_limit="export")
    async def export(n: int) -> None:
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        running["now"] -= 1

    for n in range(5):
        export.enqueue(n)
    run_until_idle(app, advance=True)
    assert running["max"] == 1


def test_explain_shows_a_schedule_held_back_by_its_rate_limit(app: App, clock: ManualClock) -> None:
    app.rate_limit("twitter", limit=1, per=30)

    @app.task(name="poll", rate_limit="twitter:{token}")
    def poll(token: str) -> None: ...

    app.every(10, poll, key="poll:a", kwargs={"token": "a"}, mode="rate")
    app.every(10, poll, key="poll:a2", kwargs={"token": "a"}, mode="rate", first_in=1)
    run_for(app, 25)
    timeline = app.client.sync(explain_data, app.client, "poll:a2", 100)["timeline"]
    waits = [e for e in timeline if e["kind"] == "rate_limited"]
    assert waits and "at its limit" in waits[-1]["detail"]
    bucket = waits[-1]["detail"].split(" ")[2]
    assert re.fullmatch(r"twitter:[0-9a-f]{32}", bucket)  # a keyed hash, not the token


def test_buckets_are_keyed_hashes_of_the_key(app: App) -> None:
    app.rate_limit("twitter", limit=1, per=1)

    @app.task(name="poll", rate_limit="twitter:{token}")
    def poll(token: str) -> None: ...

    bucket = poll.bucket([], {"token": "secret-token"}, "k1")
    assert bucket is not None and bucket.startswith("twitter:") and "secret-token" not in bucket
    assert bucket != poll.bucket([], {"token": "secret-token"}, "k2")  # keyed
    assert bucket == poll.bucket(["secret-token"], {}, "k1")  # positional arguments name the same bucket


def test_bad_declarations(app: App) -> None:
    with pytest.raises(ConfigError, match="limit= and per= together"):
        app.rate_limit("x", limit=5)
    with pytest.raises(ConfigError, match="plain name"):
        app.rate_limit("a:b", limit=1, per=1)
    with pytest.raises(TaskDefinitionError, match="refers to tokn, which are not parameters"):
        app.task(name="t", rate_limit="twitter:{tokn}")(lambda token: None)

    @app.task(name="u", rate_limit="undeclared:{x}")
    def u(x: int) -> None: ...

    u.enqueue(1)
    with pytest.raises(ConfigError, match="rate limits nobody declared: undeclared"):
        run_until_idle(app)
