"""Rate limits: declared once on the app, referenced by tasks through a key template.

    app.rate_limit("twitter", limit=900, per=900)            # at most 900 starts in any 15 minutes
    @app.task(rate_limit="twitter:{token}")                   # one bucket per token

The template's first segment (before ``:``) names the limit; the rest is formatted with
the job's arguments. The store never sees the formatted key: a bucket is named by the
limit and a keyed hash of the key (``BACKBEAT_SECRET_KEY``), so a token used in a key is
not stored. Pure functions; the store enforces (``Store.bucket_acquire``).
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Mapping
from typing import Any

from backbeat.errors import ConfigError, TaskDefinitionError
from backbeat.types import RateLimit


def declare(name: str, limit: int | None, per: float | None, concurrency: int | None) -> RateLimit:
    if not isinstance(name, str) or not name or ":" in name or "{" in name:
        raise ConfigError(f"a rate limit needs a plain name (no ':' or '{{'), got {name!r}")
    if (limit is None) != (per is None):
        raise ConfigError(f"rate limit {name!r}: give limit= and per= together (at most `limit` starts per `per` s)")
    if limit is None and concurrency is None:
        raise ConfigError(f"rate limit {name!r}: give limit= and per=, or concurrency=, or both")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"rate limit {name!r}: limit must be an integer >= 1, got {limit!r}")
    if per is not None and not per > 0:
        raise ConfigError(f"rate limit {name!r}: per must be > 0 seconds, got {per!r}")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ConfigError(f"rate limit {name!r}: concurrency must be an integer >= 1, got {concurrency!r}")
    return RateLimit(name=name, limit=limit, per=None if per is None else float(per), concurrency=concurrency)


def template_fields(template: str, task: str, parameters: set[str]) -> str:
    """The limit's name, after checking the template only refers to the task's parameters."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise TaskDefinitionError(f"task {task!r}: rate_limit template {template!r} is malformed: {exc}") from None
    unknown = sorted(f for f in fields if f.split(".")[0].split("[")[0] not in parameters)
    if unknown:
        raise TaskDefinitionError(
            f"task {task!r}: rate_limit template {template!r} refers to {', '.join(unknown)}, "
            f"which are not parameters of the task ({', '.join(sorted(parameters)) or 'none'})"
        )
    return template.split(":", 1)[0]


def bucket_id(template: str, arguments: Mapping[str, Any], secret: str | None) -> str:
    """``twitter:<hash>``: the limit's name and a keyed hash of the formatted key."""
    key = template.format(**arguments)
    name = template.split(":", 1)[0]
    digest = hmac.new((secret or "backbeat").encode(), key.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{name}:{digest}"
