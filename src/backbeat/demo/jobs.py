"""The demo's jobs app: the talk's "jobs, client libraries" box, on its own.

"Every 20 seconds, I'll hit the twitter API with token 'abc' and then the feed engine API
for user 123": the main app says a user linked an account (the event ``account.linked``);
the handler below turns that into a recurring poll for that user, with a service level.

* The event's contract is a pydantic model: a payload it refuses is dead-lettered with the
  reason, never half-handled.
* ``app.every(..., key=f"twitter:{user_id}")`` upserts by key, so a handler that runs twice
  (at-least-once) writes the same schedule twice, harmlessly.
* The poll runs under the rate limit Twitter documents, one bucket per token. When Twitter
  answers 429 anyway (it tightened its limit without notice), the task raises
  ``RateLimited(retry_after=...)`` with the answer's ``Retry-After``: the run waits, no retry
  is used up, and the token's bucket is blocked for every worker until then.
* The token is a secret (``secret=("token",)``): encrypted in every job, event and schedule
  the store holds, shown as ``***`` everywhere (docs/secrets.md).
* ``max_every`` gives the autopilot room: a schedule whose polls keep waiting on Twitter is
  stretched (up to 26 s, inside the SLA) so it stops asking too early, and shrinks back to
  20 s once Twitter relents.

The APIs' addresses come from the environment (``backbeat demo`` starts the fake APIs and
sets them), as a real jobs app reads its configuration.

``backbeat worker backbeat.demo.jobs:app`` runs it; ``backbeat demo`` does that for you.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backbeat import App, Event, RateLimited
from backbeat.errors import ConfigError

EVENT = "account.linked"
POLL_EVERY = 20.0
"""Seconds between the end of one poll and the start of the next (fixed delay)."""
POLL_SLA = 30.0
"""The promise: a successful poll at least every 30 s. With fixed-delay re-arming the gap is
interval + run time (+ any rate-limit wait), so the interval stays below the SLA."""
POLL_MAX_EVERY = 26.0
"""How far the autopilot may stretch the interval when Twitter pushes back (it stops short of
what the SLA allows: 30 s - run time - a 3 s margin)."""
TWITTER_URL_ENV = "BACKBEAT_DEMO_TWITTER_URL"
FEED_URL_ENV = "BACKBEAT_DEMO_FEED_URL"
HTTP_TIMEOUT = 5.0
"""Every call to an upstream has its own timeout (a sync task's thread cannot be killed)."""

app = App(name="demo")
app.rate_limit("twitter", limit=6, per=60)  # what Twitter documents, per token


class AccountLinked(BaseModel):
    """The contract of ``account.linked``: what the main app promises to send."""

    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(ge=1)
    token: str = Field(min_length=1)


class UpstreamError(Exception):
    """An upstream answered with an error other than 429 (the job fails and is retried)."""


@app.task(name="demo.poll", rate_limit="twitter:{token}", timeout=2 * HTTP_TIMEOUT + 1, secret=("token",))
def poll_twitter(user_id: int, token: str) -> int:
    """Read the user's timeline with their token, post it to their feed; return how many
    items were posted."""
    timeline = call("GET", f"{endpoint(TWITTER_URL_ENV)}/2/timeline", token=token)
    items = timeline.get("data", [])
    call("POST", f"{endpoint(FEED_URL_ENV)}/feeds/{user_id}/items", body={"items": items})
    return len(items)


@app.on(EVENT, schema=AccountLinked, name="demo.start_polling", secret=("token",))
def start_polling(event: Event) -> None:
    """A user linked their Twitter account: poll it every 20 s, and promise 30 s."""
    linked: AccountLinked = event.data
    app.every(
        POLL_EVERY,
        poll_twitter,
        key=f"twitter:{linked.user_id}",
        kwargs={"user_id": linked.user_id, "token": linked.token},
        sla=POLL_SLA,
        max_every=POLL_MAX_EVERY,
        description=f"poll user {linked.user_id}'s Twitter timeline into their feed",
    )


def endpoint(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        raise ConfigError(f"${variable} is not set: it names the API this job calls (`backbeat demo` sets it)")
    return url.rstrip("/")


def call(method: str, url: str, *, token: str | None = None, body: Any = None) -> Any:
    """One JSON call to an upstream; a 429 becomes ``RateLimited`` with its Retry-After."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read(300).decode("utf-8", "replace")
            if exc.code == 429:
                wait = retry_after(exc.headers.get("Retry-After"))
                raise RateLimited(retry_after=wait, reason=f"{method} {url} answered 429: {detail}") from None
            raise UpstreamError(f"{method} {url} answered {exc.code}: {detail}") from None


def retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds to wait, from a ``Retry-After`` header: whole seconds or an HTTP date."""
    if value is None:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, moment.timestamp() - time.time())
