"""The demo's fake upstreams: Twitter's per-token limit (429 + Retry-After, tightening), the
feed engine's counts, both over real HTTP on loopback; and how the jobs app reads them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from backbeat import ManualClock, RateLimited
from backbeat.demo import jobs
from backbeat.demo.fakeapis import FakeFeed, FakeTwitter, Limit, Request, SlidingWindow, served
from backbeat.errors import ConfigError


def timeline(token: str | None = "abc") -> Request:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return Request(method="GET", path="/2/timeline", headers=headers)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_a_window_grants_up_to_its_limit_then_names_the_wait(clock: ManualClock) -> None:
    window = SlidingWindow(Limit(requests=2, per=10))
    now = clock.now()
    assert window.take("a", now) is None
    assert window.take("a", now + 4) is None
    assert window.take("a", now + 5) == pytest.approx(5.0)  # the first grant leaves the window at +10
    assert window.take("b", now + 5) is None  # per key
    assert window.take("a", now + 10) is None


def test_twitter_answers_429_with_retry_after_past_the_limit(clock: ManualClock) -> None:
    twitter = FakeTwitter(Limit(requests=2, per=60), clock=clock)
    assert [twitter.handle(timeline()).status for _ in range(2)] == [200, 200]
    over = twitter.handle(timeline())
    assert over.status == 429
    assert over.headers["Retry-After"] == "60"
    assert twitter.handle(timeline("other")).status == 200  # another token has its own window
    clock.advance(59.5)
    assert twitter.handle(timeline()).headers["Retry-After"] == "1"  # whole seconds, rounded up
    clock.advance(0.5)
    assert twitter.handle(timeline()).status == 200
    assert (twitter.requests, twitter.throttled) == (6, 2)


def test_tightening_applies_at_once_and_counts_earlier_grants(clock: ManualClock) -> None:
    twitter = FakeTwitter(Limit(requests=6, per=60), clock=clock)
    for _ in range(3):
        assert twitter.handle(timeline()).status == 200
        clock.advance(10)
    twitter.tighten(Limit(requests=1, per=25))
    assert twitter.limit == Limit(requests=1, per=25) and twitter.tightened_at == clock.now()
    refused = twitter.handle(timeline())  # the grant 10 s ago is still in the new window
    assert refused.status == 429 and refused.headers["Retry-After"] == "15"
    clock.advance(15)
    assert twitter.handle(timeline()).status == 200


def test_twitter_refuses_what_it_does_not_know(clock: ManualClock) -> None:
    twitter = FakeTwitter(Limit(requests=1, per=1), clock=clock)
    assert twitter.handle(timeline(None)).status == 401
    assert twitter.handle(timeline(" ")).status == 401
    assert twitter.handle(Request(method="GET", path="/1/timeline")).status == 404
    assert twitter.handle(Request(method="POST", path="/2/timeline")).status == 405
    assert twitter.requests == 0


def test_a_limit_names_a_bad_setting() -> None:
    with pytest.raises(ConfigError, match="requests >= 1"):
        Limit(requests=0, per=1)
    with pytest.raises(ConfigError, match="per > 0"):
        Limit(requests=1, per=0)


def test_the_feed_engine_counts_posts_per_user() -> None:
    feed = FakeFeed()

    def post(path: str, body: bytes) -> int:
        return feed.handle(Request(method="POST", path=path, body=body)).status

    assert post("/feeds/7/items", b'{"items": [1, 2]}') == 202
    assert post("/feeds/7/items", b'{"items": []}') == 202
    assert post("/feeds/8/items", b'{"items": [3]}') == 202
    assert post("/feeds/8/items", b"not json") == 400
    assert post("/feeds/8/items", b'{"things": []}') == 400
    assert post("/feeds/x/items", b'{"items": []}') == 404
    assert feed.handle(Request(method="GET", path="/feeds/8/items")).status == 405
    assert feed.totals() == (3, 2) and feed.items == 3


@pytest.fixture
def apis(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeTwitter, FakeFeed]]:
    twitter, feed = FakeTwitter(Limit(requests=1, per=30), clock=clock), FakeFeed()
    with served(twitter, name="twitter") as t, served(feed, name="feed") as f:
        monkeypatch.setenv(jobs.TWITTER_URL_ENV, t.url)
        monkeypatch.setenv(jobs.FEED_URL_ENV, f.url)
        yield twitter, feed


def test_over_http_a_poll_posts_the_timeline_and_a_429_becomes_rate_limited(
    apis: tuple[FakeTwitter, FakeFeed],
) -> None:
    twitter, feed = apis
    assert jobs.poll_twitter(user_id=5, token="abc") == 2  # a task is callable as a function
    assert feed.posts[5] == 1
    with pytest.raises(RateLimited) as raised:
        jobs.poll_twitter(user_id=5, token="abc")
    assert raised.value.retry_after == 30.0  # from the 429's Retry-After
    assert feed.totals() == (1, 1) and twitter.throttled == 1


def test_over_http_the_servers_answer_json_errors(apis: tuple[FakeTwitter, FakeFeed]) -> None:
    url = jobs.endpoint(jobs.TWITTER_URL_ENV) + "/2/timeline"
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(url, timeout=5)
    with raised.value as answer:
        assert answer.code == 401
        assert "Bearer" in json.loads(answer.read())["error"]
    with pytest.raises(jobs.UpstreamError, match="answered 400"):
        jobs.call("POST", jobs.endpoint(jobs.FEED_URL_ENV) + "/feeds/1/items", body=[])


def test_a_job_without_its_api_address_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(jobs.TWITTER_URL_ENV, raising=False)
    with pytest.raises(ConfigError, match=jobs.TWITTER_URL_ENV):
        jobs.poll_twitter(user_id=1, token="abc")


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert jobs.retry_after("7") == 7.0
    assert jobs.retry_after(None) == 1.0
    assert jobs.retry_after("soon") == 1.0
    assert jobs.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: at once
