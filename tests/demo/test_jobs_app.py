"""The demo's jobs app in-process on the memory store with a manual clock: the main app's
events start polls; the polls keep the SLA through a tightened Twitter limit (429s become
waits); a limit tighter than the SLA shows up as breaches, explained in the summary.
The fake APIs answer over real HTTP on loopback, on the same manual clock."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from rich.console import Console

from backbeat import App, Client, ManualClock
from backbeat.demo import figures, jobs, view
from backbeat.demo.fakeapis import FakeFeed, FakeTwitter, Limit, served
from backbeat.demo.figures import Run, Snapshot, Upstreams
from backbeat.demo.mainapp import MainApp
from backbeat.demo.runner import TIGHTENED, documented_limit
from backbeat.ids import uuid7
from backbeat.secrets import keygen
from backbeat.store.base import Store
from backbeat.testing import arun_for
from backbeat.types import DecisionKind


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def app(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    """The demo's own module-level app, on a fresh memory store and the manual clock, with a
    key for the tokens (the main app's Client reads it from the environment)."""
    app, before, settings = jobs.app, jobs.app.clock, jobs.app.settings
    key = keygen()
    monkeypatch.setenv("BACKBEAT_SECRET_KEY", key)
    app.clock = clock
    app.configure(url=f"memory://{uuid7()}", secret_key=key)
    try:
        yield app
    finally:
        await app.aclose()
        app.clock = before
        app.configure(url=settings.url, secret_key=settings.secret_key)


@pytest.fixture
def feed() -> FakeFeed:
    return FakeFeed()


@pytest.fixture
def twitter(clock: ManualClock, feed: FakeFeed, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwitter]:
    twitter = FakeTwitter(documented_limit(), clock=clock)
    with served(twitter, name="twitter") as t, served(feed, name="feed") as f:
        monkeypatch.setenv(jobs.TWITTER_URL_ENV, t.url)
        monkeypatch.setenv(jobs.FEED_URL_ENV, f.url)
        yield twitter


async def link(app: App, clock: ManualClock, users: int) -> Store:
    main_app = MainApp(Client(app.settings.url, clock=clock), users, over=0, clock=clock)
    await main_app.run()
    assert main_app.emitted == users
    return await app.client.astore()


async def snapshot(store: Store, twitter: FakeTwitter, feed: FakeFeed, since: float, now: float) -> Snapshot:
    posts, feeds = feed.totals()
    return Snapshot(
        run=Run(url="memory://", users=2, emitted=2, duration=120, auto=False, workers=2, log="demo.log"),
        figures=await figures.collect(store, since=since, now=now, stale_after=60),
        upstreams=Upstreams(
            requests=twitter.requests,
            throttled=twitter.throttled,
            first_limit=str(documented_limit()),
            limit=str(twitter.limit),
            tightened_after=None if twitter.tightened_at is None else twitter.tightened_at - since,
            posts=posts,
            feeds=feeds,
        ),
        record=await figures.record(store, since=since, now=now),
    )


def rendered(s: Snapshot) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(view.summary(s))
    return out.getvalue()


async def test_polls_keep_the_sla_through_a_tightened_limit(
    app: App, clock: ManualClock, twitter: FakeTwitter, feed: FakeFeed
) -> None:
    since = clock.now()
    store = await link(app, clock, 2)
    await arun_for(app, 60)  # polls at 0, 20, 40, 60 s: within the documented limit
    assert twitter.throttled == 0
    twitter.tighten(TIGHTENED)  # 1 per 25 s: the poll due at 80 s meets a 429 and waits 5 s
    await arun_for(app, 60)
    assert twitter.throttled == 2 * 2
    s = await snapshot(store, twitter, feed, since, clock.now())
    f, rec = s.figures, s.record
    assert rec is not None
    assert (f.events, f.schedules, f.polled, f.handlers) == ({"handled": 2}, 2, 2, {"succeeded": 2})
    assert f.polls == {"succeeded": 2 * 6} and f.intervals == (jobs.POLL_EVERY, jobs.POLL_EVERY)
    assert feed.totals() == (2 * 6, 2)  # each successful poll posted to its user's feed once
    assert f.waits == twitter.throttled  # each 429 is one wait in the decision log
    assert f.compliance == 1.0 and f.in_breach == 0 and rec.breaches == 0
    assert rec.worst_gap == pytest.approx(25.0)  # 20 s, then a 5-s wait for Retry-After
    text = rendered(s)
    assert "Every linked account was polled within its 30 s SLA" in text
    assert "answered 4 requests with 429" in text
    assert json.loads(json.dumps(view.summary_json(s)))["rate_limits"]["waits"] == 4


async def test_a_limit_tighter_than_the_sla_shows_as_explained_breaches(
    app: App, clock: ManualClock, twitter: FakeTwitter, feed: FakeFeed
) -> None:
    since = clock.now()
    store = await link(app, clock, 2)
    await arun_for(app, 20)
    twitter.tighten(Limit(requests=1, per=40))  # a poll at most every 40 s: past the 30-s SLA
    await arun_for(app, 100)
    s = await snapshot(store, twitter, feed, since, clock.now())
    rec = s.record
    assert rec is not None
    assert [b.key for b in rec.breached] == ["twitter:1", "twitter:2"]
    assert all(b.seconds > 0 and b.waits >= 1 for b in rec.breached)
    assert s.figures.compliance is not None and s.figures.compliance < 1.0
    assert rec.worst_gap == pytest.approx(40.0)
    assert DecisionKind.RATE_LIMITED in {d.kind for d in await store.decision_list("twitter:1")}
    text = rendered(s)
    assert "2 of 2 schedules breached their 30 s SLA" in text
    assert "twitter:1:" in text and "rate-limit waits" in text
    assert "backbeat explain twitter:1" in text


async def test_a_contract_breaking_event_is_dead_with_its_reason(app: App, clock: ManualClock) -> None:
    client = Client(app.settings.url, clock=clock)
    await client.aemit("account.linked", {"user_id": "me", "token": ""}, id="bad")
    await arun_for(app, 1)
    store = await app.client.astore()
    event = await store.event_get("bad")
    assert event.state.value == "dead" and event.reason is not None
    assert "user_id" in event.reason and "token" in event.reason
    assert (await figures.collect(store, since=0, now=clock.now(), stale_after=60)).schedules == 0
    await client.aclose()
