"""HTTP: events for a jobs app reached over HTTP, ``POST <base>/api/events``.

The server side is the dashboard app's ``/api/events`` (``backbeat.web.api.events``),
which stores each event before answering 202. The publisher sends a JSON array of
envelopes with ``Authorization: Bearer <token>`` (``BACKBEAT_TOKEN``); a refusal (400, 401,
403, 413) is an ``EventError`` with the server's reason, an unreachable server or a 5xx
a ``ConnectionError`` the client retries.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Sequence

from backbeat.brokers import Publisher, redact
from backbeat.errors import ConfigError, EventError
from backbeat.types import NewEvent

TIMEOUT = 10.0


class HttpPublisher(Publisher):
    def __init__(self, url: str, *, token: str | None) -> None:
        if "?" in url or "#" in url:
            raise ConfigError(f"HTTP event URL {redact(url)} takes no query: give the dashboard's base URL")
        self.endpoint = url.rstrip("/") + "/api/events"
        self.url = redact(url)
        self.token = token

    async def publish(self, events: Sequence[NewEvent]) -> None:
        body = json.dumps([self.body(e) for e in events], ensure_ascii=False).encode()
        await asyncio.to_thread(self._post, body)

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            reason = _reason(exc)
            if exc.code >= 500:
                raise ConnectionError(f"{self.endpoint} answered {exc.code}: {reason}") from None
            raise EventError(f"{self.endpoint} refused the event(s) ({exc.code}): {reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionError(f"cannot reach {self.endpoint}: {getattr(exc, 'reason', exc)}") from None

    async def close(self) -> None:
        return None


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read() or b"{}")
    except ValueError:
        return str(exc.reason)
    return str(data.get("error") if isinstance(data, dict) and data.get("error") else exc.reason)
