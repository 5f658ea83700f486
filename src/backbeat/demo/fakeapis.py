"""The demo's upstreams: a fake Twitter API and a fake feed-engine API, on loopback.

Each API is a small class whose ``handle(request)`` returns a ``Response``; ``Served``
puts one on ``127.0.0.1`` (an ephemeral port) with the standard library's
``ThreadingHTTPServer`` in a background thread. So the demo needs no web framework, and
the workers reach the APIs as they would a real upstream: over a socket, with a timeout.

* **Twitter**: ``GET /2/timeline`` with ``Authorization: Bearer TOKEN`` answers a few
  made-up tweets. Each token may make at most ``limit.requests`` requests in any
  ``limit.per`` seconds (a sliding window); past that the answer is ``429 Too Many
  Requests`` with ``Retry-After`` in whole seconds (rounded up) saying when the window lets
  the next one through. ``tighten()`` lowers the limit while running, as real upstreams do
  without notice (the demo does it midway).
* **Feed engine**: ``POST /feeds/USER_ID/items`` with ``{"items": [...]}`` keeps nothing but
  counts posts per user.

Thread safety: requests are served on many threads; each API guards its counters and
windows with one lock, held only for the bookkeeping (never while sleeping).

Internal module.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from backbeat.clock import Clock, SystemClock
from backbeat.errors import ConfigError

log = logging.getLogger("backbeat.demo.api")
TIMELINE = "/2/timeline"


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    """Names in lower case."""
    body: bytes = b""


@dataclass(frozen=True, kw_only=True, slots=True)
class Response:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class Api(Protocol):
    def handle(self, request: Request) -> Response: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Limit:
    """At most ``requests`` requests per token in any ``per`` seconds."""

    requests: int
    per: float

    def __post_init__(self) -> None:
        if not isinstance(self.requests, int) or self.requests < 1:
            raise ConfigError(f"a rate limit needs requests >= 1, got {self.requests!r}")
        if not self.per > 0:
            raise ConfigError(f"a rate limit needs per > 0 seconds, got {self.per!r}")

    def __str__(self) -> str:
        return f"{self.requests} per {self.per:g} s"


class SlidingWindow:
    """Grants per key within a ``Limit``; not thread-safe (its owner holds a lock)."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self._grants: dict[str, deque[float]] = {}

    def take(self, key: str, now: float) -> float | None:
        """Grant a request at ``now`` (``None``), or say how many seconds until one would be."""
        grants = self._grants.setdefault(key, deque())
        while grants and grants[0] <= now - self.limit.per:
            grants.popleft()
        if len(grants) < self.limit.requests:
            grants.append(now)
            return None
        # after a tightening the window may hold more grants than the new limit: the next
        # request fits once all but (requests - 1) of them have left it
        return grants[-self.limit.requests] + self.limit.per - now


def error(status: int, message: str, **headers: str) -> Response:
    return Response(status=status, body={"error": message}, headers=headers)


class FakeTwitter:
    """The fake Twitter API: per-token sliding-window limit, 429 + Retry-After beyond it."""

    def __init__(self, limit: Limit, *, latency: float = 0.0, clock: Clock | None = None) -> None:
        self.latency = latency
        """Seconds each granted answer takes (a network round trip and the upstream's work)."""
        self.clock: Clock = clock or SystemClock()
        self.requests = 0
        self.throttled = 0
        """Requests answered 429."""
        self.tightened_at: float | None = None
        self._window = SlidingWindow(limit)
        self._lock = threading.Lock()
        self._tweets = 0

    @property
    def limit(self) -> Limit:
        return self._window.limit

    def tighten(self, limit: Limit) -> None:
        """Apply a new limit to every token from now on (grants already made still count)."""
        with self._lock:
            self._window.limit = limit
            self.tightened_at = self.clock.now()

    def handle(self, request: Request) -> Response:
        if request.path.split("?", 1)[0] != TIMELINE:
            return error(404, f"no such endpoint {request.path}; try GET {TIMELINE}")
        if request.method != "GET":
            return error(405, f"{TIMELINE} takes GET")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error(401, "send the user's token as 'Authorization: Bearer TOKEN'")
        with self._lock:
            self.requests += 1
            wait = self._window.take(token.strip(), self.clock.now())
            if wait is not None:
                self.throttled += 1
                retry_after = str(max(1, math.ceil(wait)))
                return error(429, f"rate limit of {self._window.limit} exceeded", **{"Retry-After": retry_after})
            self._tweets += 2
            numbers = (self._tweets - 1, self._tweets)
        if self.latency > 0:
            time.sleep(self.latency)
        tweets = [{"id": str(n), "text": f"tweet number {n}"} for n in numbers]
        return Response(status=200, body={"data": tweets, "meta": {"result_count": len(tweets)}})


class FakeFeed:
    """The fake feed engine: counts the posts each user's feed received."""

    def __init__(self) -> None:
        self.posts: Counter[int] = Counter()
        self.items = 0
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        parts = request.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 3 or parts[0] != "feeds" or parts[2] != "items" or not parts[1].isdigit():
            return error(404, f"no such endpoint {request.path}; try POST /feeds/USER_ID/items")
        if request.method != "POST":
            return error(405, "/feeds/USER_ID/items takes POST")
        try:
            body = json.loads(request.body)
        except ValueError as exc:
            return error(400, f"the body is not JSON: {exc}")
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            return error(400, 'the body must be {"items": [...]}')
        with self._lock:
            self.posts[int(parts[1])] += 1
            self.items += len(body["items"])
        return Response(status=202, body={"accepted": len(body["items"])})

    def totals(self) -> tuple[int, int]:
        """Posts received, and how many users' feeds received one."""
        with self._lock:
            return sum(self.posts.values()), len(self.posts)


def _handler_for(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                response = error(400, "Content-Length must be a whole number")
            else:
                headers = {name.lower(): value for name, value in self.headers.items()}
                body = self.rfile.read(length) if length else b""
                response = api.handle(Request(method=self.command, path=self.path, headers=headers, body=body))
            data = json.dumps(response.body).encode()
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


class Served:
    """An API answering HTTP on ``127.0.0.1`` at ``url`` until ``close()``."""

    def __init__(self, api: Api, *, name: str) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(api))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"demo-{name}", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextmanager
def served(api: Api, *, name: str) -> Iterator[Served]:
    server = Served(api, name=name)
    try:
        yield server
    finally:
        server.close()
