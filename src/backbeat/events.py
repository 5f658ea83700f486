"""Events: the wire envelope, handlers (``@app.on``), typed contracts, and dispatch.

The envelope is the contract between a main app (any language) and the jobs app::

    {"name": "account.linked", "id": "<unique>", "occurred_at": "2026-11-28T10:00:00Z",
     "payload": {"user_id": 123, "token": "abc"}, "key": "user:123"}

``name`` and ``payload`` (an object) are required; a missing ``id`` is generated (so the
event cannot be deduplicated) and a missing ``occurred_at`` is the time received.
``ENVELOPE_SCHEMA`` is its JSON Schema (``backbeat events schema`` prints it with every
declared contract).

Dispatch (pure, given the app's handlers): an event becomes one job per matching handler,
or ``unhandled`` (recorded, not an error), or ``dead`` with the reason when a handler's
contract refuses its payload. The reserved event ``backbeat.enqueue`` carries an enqueue
by task name from a client that only reaches a broker; its payload is ``{"task": name,
"args": [...], "kwargs": {...}}`` with optional ``queue``, ``priority``, ``dedup_key``,
``at`` (ISO 8601) and ``job_id`` (the id the job gets, so the sender knows it).

Patterns: ``*`` matches one dot-separated segment, ``**`` any number (``account.*``
matches ``account.linked``; ``account.**`` also ``account.linked.twice``).
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, get_args

from backbeat.clock import iso
from backbeat.config import MAX_KEY, check_text
from backbeat.errors import EnqueueError, EventError, PayloadError, SecretError, SignatureError, TaskDefinitionError
from backbeat.ids import uuid7
from backbeat.jobs import build_job
from backbeat.secrets import (
    REDACTED,
    event_context,
    for_event,
    for_task,
    is_sealed,
    keyring,
    open_fields,
    redact,
    refuse_positional,
    secret_names,
)
from backbeat.serialization import check_json, utf8_size
from backbeat.signing import SIGNATURE, Signing
from backbeat.types import EventSettlement, EventState, NewEvent, NewJob, TaskInfo

if TYPE_CHECKING:
    from backbeat.app import App
    from backbeat.config import Settings
    from backbeat.tasks import Task

ENQUEUE_EVENT = "backbeat.enqueue"
EARLIEST, LATEST = -62135596800.0, 253402300799.0
"""The first second of year 1 and the last of year 9999: other times cannot be shown."""
NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
PATTERN = re.compile(r"^(\*\*|\*|[A-Za-z0-9_\-]+)(\.(\*\*|\*|[A-Za-z0-9_\-]+))*$")
ENVELOPE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "backbeat event envelope",
    "type": "object",
    "required": ["name", "payload"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME.pattern, "maxLength": 200},
        "id": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": 200,
            "pattern": "^[^\\u0000]*$",
            "description": "unique: a repeat is ignored (missing or null: one is made up, and the event "
            "cannot be deduplicated)",
        },
        "occurred_at": {
            "type": ["string", "number", "null"],
            "format": "date-time",
            "minimum": EARLIEST,
            "maximum": LATEST,
            "description": "ISO 8601 (or Unix seconds), years 1 to 9999; missing or null: when it was received",
        },
        "payload": {"type": "object"},
        "key": {"type": ["string", "null"], "maxLength": 500, "pattern": "^[^\\u0000]*$"},
        "sig": {
            "type": "string",
            "pattern": f"^{SIGNATURE.pattern}$",
            "description": "HMAC-SHA256 signature, when the sender has a signing key (docs/secrets.md); "
            "a consumer with a signing key refuses an event without a valid one",
        },
    },
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """What a handler receives. ``payload`` is the dict as sent; ``data`` the payload as
    the handler's contract (a pydantic model) validated it, else ``None``."""

    id: str
    name: str
    occurred_at: datetime
    payload: dict[str, Any]
    key: str | None = None
    data: Any = None


def envelope(event: NewEvent, signing: Signing | None = None) -> dict[str, Any]:
    """The wire form of ``event``, signed when ``signing`` is given."""
    body = {
        "name": event.name,
        "id": event.id,
        "occurred_at": iso(event.occurred_at),
        "payload": json.loads(event.payload),
        "key": event.key,
    }
    if signing is not None:
        body["sig"] = signing.sign_event(event.name, event.id, body["payload"])
    return body


def parse(
    raw: bytes | str,
    *,
    source: str,
    received: float,
    limit: int,
    default_id: str | None = None,
    signing: Signing | None = None,
) -> NewEvent:
    """The event a wire message carries; ``EventError`` naming what is wrong (also when
    ``signing`` is given and no known key signed it). ``default_id`` (the broker's id of
    the message) stands in for a missing ``id``."""
    size = len(raw)
    if size > limit:
        raise EventError(f"message is {size:,} bytes, over the limit of {limit:,} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"message is not valid JSON: {exc}") from None
    except RecursionError:
        raise EventError("message is nested too deeply") from None
    if not isinstance(data, dict):
        raise EventError(f"message must be a JSON object (the envelope), got {type(data).__name__}")
    return from_envelope(data, source=source, received=received, default_id=default_id, signing=signing)


def from_envelope(
    data: Mapping[str, Any],
    *,
    source: str,
    received: float,
    default_id: str | None = None,
    signing: Signing | None = None,
) -> NewEvent:
    unknown = sorted(set(data) - set(ENVELOPE_SCHEMA["properties"]))
    if unknown:
        raise EventError(
            f"envelope has unknown field(s) {', '.join(unknown)}; allowed: name, id, occurred_at, payload, key, sig"
        )
    name = data.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name) or len(name) > 200:
        raise EventError(f"event name must be dot-separated words (e.g. account.linked), got {name!r}")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise EventError(f"event {name}: payload must be a JSON object, got {type(payload).__name__}")
    event_id = data.get("id")
    if event_id is None:
        event_id = default_id or uuid7()
    key = data.get("key")
    if not isinstance(event_id, str) or (key is not None and not isinstance(key, str)):
        raise EventError(f"event {name}: id and key must be strings")
    try:
        check_text(event_id, f"event {name}: id", limit=200, error=EventError)
        if key:
            check_text(key, f"event {name}: key", limit=MAX_KEY, error=EventError)
        check_json(payload, "payload")
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        utf8_size(text, "payload")
    except PayloadError as exc:
        raise EventError(f"event {name}: {exc}") from None
    _check_signature(data, name, signing)
    return NewEvent(
        id=event_id,
        name=name,
        occurred_at=_time(data.get("occurred_at"), received),
        payload=text,
        key=key,
        source=source,
    )


def _check_signature(data: Mapping[str, Any], name: str, signing: Signing | None) -> None:
    """``EventError`` if ``sig`` is malformed, or if ``signing`` is given and no key it knows signed."""
    if "sig" in data and not (isinstance(data["sig"], str) and SIGNATURE.fullmatch(data["sig"])):
        raise EventError(f"event {name}: sig must be a signature (bbsig:1:<key id>:<mac>), got {data['sig']!r:.80}")
    if signing is not None:
        try:
            signing.verify_event(data, data["id"] if isinstance(data.get("id"), str) else "")
        except SignatureError as exc:
            raise EventError(str(exc)) from None


def _time(value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) if abs(value) < 1e300 else math.inf
    else:
        try:
            moment = datetime.fromisoformat(str(value))
            seconds = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        except (ValueError, OverflowError):
            raise EventError(f"occurred_at {value!r} is not an ISO 8601 time") from None
        # a valid local time at the very edge of year 1 or 9999 may fall outside it in UTC
        seconds = min(max(seconds, EARLIEST), LATEST)
    if not EARLIEST <= seconds <= LATEST:
        raise EventError(f"occurred_at {value!r} is out of range (years 1 to 9999)")
    return seconds


def dead(raw: bytes | str, reason: str, *, source: str, received: float, event_id: str | None = None) -> NewEvent:
    """A message that is not an acceptable event, kept as it came (a dead letter; the
    first 100,000 characters of it)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return NewEvent(
        id=event_id or uuid7(),
        name="backbeat.malformed",
        occurred_at=received,
        payload=json.dumps({"raw": text[:100_000], "reason": reason}),
        source=source,
    )


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    parts = [r"[^.]+(\.[^.]+)*" if p == "**" else r"[^.]+" if p == "*" else re.escape(p) for p in pattern.split(".")]
    return re.compile(r"^" + r"\.".join(parts) + r"$")


def matches(pattern: str, name: str) -> bool:
    return bool(_regex(pattern).match(name))


@dataclass(frozen=True, kw_only=True, slots=True)
class Handler:
    pattern: str
    task: Task[Any, Any]
    schema: Any = None
    """A pydantic model class (anything with ``model_validate``/``model_json_schema``)."""


def check_pattern(pattern: str) -> str:
    if not isinstance(pattern, str) or not PATTERN.fullmatch(pattern):
        raise TaskDefinitionError(f"event pattern must be dot-separated words, '*' or '**', got {pattern!r}")
    return pattern


def check_schema(schema: Any, pattern: str) -> Any:
    if schema is not None and not (hasattr(schema, "model_validate") and hasattr(schema, "model_json_schema")):
        raise TaskDefinitionError(
            f"@app.on({pattern!r}): schema must be a pydantic model class (with model_validate), got {schema!r}"
        )
    return schema


def handler_wrapper(fn: Callable[..., Any], schema: Any) -> Callable[..., Any]:
    """The task function of a handler: rebuilds the ``Event`` from the job's envelope."""

    def to_event(event: dict[str, Any]) -> Event:
        payload = event["payload"]
        return Event(
            id=event["id"],
            name=event["name"],
            occurred_at=datetime.fromisoformat(event["occurred_at"]),
            payload=payload,
            key=event.get("key"),
            data=None if schema is None else schema.model_validate(payload),
        )

    if inspect.iscoroutinefunction(fn):

        async def run_async(event: dict[str, Any]) -> Any:
            return await fn(to_event(event))

        return run_async

    def run(event: dict[str, Any]) -> Any:
        return fn(to_event(event))

    return run


class Dispatcher:
    """Turns events into settlements with the app's handlers (and its tasks, for
    ``backbeat.enqueue``)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def settle(self, event: NewEvent, registry: Mapping[str, TaskInfo], now: float) -> EventSettlement:
        """The event's settlement; the payload fields its handlers (here or registered by
        workers) declare secret are sealed in it, if the sender did not seal them."""
        if event.name == ENQUEUE_EVENT:
            return self._enqueue(event, registry, now)
        fields = secret_fields_of(event.name, [*(h.task.info for h in self.app.handlers), *registry.values()])
        try:
            event = seal_event(event, fields, self.app.settings)
        except SecretError as exc:
            return EventSettlement(event=redact_event(event, fields), state=EventState.DEAD, reason=str(exc))
        handlers = [h for h in self.app.handlers if matches(h.pattern, event.name)]
        if not handlers:
            return EventSettlement(event=event, state=EventState.UNHANDLED)
        body = envelope(event)
        try:  # contracts judge the values, and a sealed value that does not open is refused now
            payload, _ = open_fields(body["payload"], keyring(self.app.settings), event_context(event.name))
        except SecretError as exc:
            return EventSettlement(event=event, state=EventState.DEAD, reason=str(exc))
        refusals = [f"{h.task.name}: {_first_lines(bad)}" for h in handlers if (bad := _refusal(h, payload))]
        if refusals:
            return EventSettlement(
                event=event, state=EventState.DEAD, reason="payload breaks the contract of " + "; ".join(refusals)
            )
        try:
            jobs = tuple(
                build_job(h.task.info, (), {"event": body}, settings=self.app.settings, now=now) for h in handlers
            )
        except EnqueueError as exc:
            return EventSettlement(event=event, state=EventState.DEAD, reason=f"cannot make its jobs: {exc}")
        return EventSettlement(event=event, state=EventState.HANDLED, jobs=jobs)

    def _enqueue(self, event: NewEvent, registry: Mapping[str, TaskInfo], now: float) -> EventSettlement:
        """The job a ``backbeat.enqueue`` event asks for. The event is kept with the task's
        secret arguments sealed as in the job (or ``***`` if they cannot be sealed)."""
        body = json.loads(event.payload)
        task = body.get("task")
        local = self.app.tasks.get(task) if isinstance(task, str) else None
        info = local.info if local is not None else registry.get(task) if isinstance(task, str) else None
        kwargs = body.get("kwargs")
        try:
            if not isinstance(task, str) or not task:
                raise EnqueueError("backbeat.enqueue needs a task name in payload.task")
            job = self._job(body, task, local, info, now)
        except (EnqueueError, TypeError, ValueError, AttributeError) as exc:
            if info is not None and isinstance(kwargs, dict) and (sealer := for_task(info, self.app.settings)):
                try:
                    event = _with_payload(event, {**body, "kwargs": sealer.seal(kwargs)})
                except SecretError:
                    hidden = {k: REDACTED if k in info.secret else v for k, v in kwargs.items()}
                    event = _with_payload(event, {**body, "kwargs": hidden})
            return EventSettlement(event=event, state=EventState.DEAD, reason=f"enqueue refused: {exc}")
        sealed = json.loads(job.payload)["kwargs"]
        if sealed != kwargs and kwargs:
            event = _with_payload(event, {**body, "kwargs": sealed})
        return EventSettlement(event=event, state=EventState.HANDLED, jobs=(job,))

    def _job(
        self, body: dict[str, Any], task: str, local: Task[Any, Any] | None, info: TaskInfo | None, now: float
    ) -> NewJob:
        args, kwargs = list(body.get("args") or []), dict(body.get("kwargs") or {})
        if local is not None:
            local.check_arguments(args, kwargs)
        elif info is not None:
            refuse_positional(info, args)
        info = info or TaskInfo(name=task, queue="default", max_attempts=1 + self.app.settings.default_retries)
        options = {k: body[k] for k in ("queue", "priority", "dedup_key") if body.get(k) is not None}
        at = datetime.fromisoformat(body["at"]) if body.get("at") is not None else None
        job = build_job(info, args, kwargs, settings=self.app.settings, now=now, at=at, **options)
        job_id = body.get("job_id")
        if job_id is not None:
            if not isinstance(job_id, str) or not 0 < len(job_id) <= 100:
                raise EnqueueError(f"payload.job_id must be a short string, got {job_id!r}")
            job = replace(job, id=job_id)
        return job


def _with_payload(event: NewEvent, payload: Any) -> NewEvent:
    return replace(event, payload=json.dumps(payload, separators=(",", ":"), ensure_ascii=False))


def secret_fields_of(name: str, tasks: Iterable[TaskInfo]) -> set[str]:
    """The payload fields of event ``name`` that handlers among ``tasks`` declare secret."""
    return {f for t in tasks if t.handles is not None and t.secret and matches(t.handles, name) for f in t.secret}


def seal_event(event: NewEvent, fields: Collection[str], settings: Settings) -> NewEvent:
    """``event`` with ``fields`` of its payload sealed (the one place event fields are sealed)."""
    if not fields:
        return event
    payload = json.loads(event.payload)
    if not any(f in payload and not is_sealed(payload[f]) for f in fields):
        return event
    return _with_payload(event, for_event(event.name, fields, settings).seal(payload))


def redact_event(event: NewEvent, fields: Collection[str] = ()) -> NewEvent:
    """``event`` with ``fields`` (and every sealed value) of its payload replaced by ``***``:
    what is kept of an event whose secrets cannot be sealed (no key)."""
    payload = redact(json.loads(event.payload))
    if isinstance(payload, dict):
        payload.update({f: REDACTED for f in fields if f in payload})
    return _with_payload(event, payload)


def secret_fields(secret: Sequence[str], schema: Any, pattern: str) -> tuple[str, ...]:
    """The payload fields a handler declares secret: ``secret=``, and its contract's
    ``SecretStr``/``SecretBytes`` fields (by the name they have in the payload)."""
    what = f"@app.on({pattern!r})"
    names = secret_names(secret, what)
    if schema is None:
        return names
    fields = _contract_fields(schema)
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise TaskDefinitionError(
            f"{what}: secret names {unknown[0]!r}, which is not a field of its contract {schema.__name__} "
            f"(fields: {', '.join(fields) or 'none'})"
        )
    return names + tuple(f for f, is_secret in fields.items() if is_secret and f not in names)


def _contract_fields(schema: Any) -> dict[str, bool]:
    """Payload field name -> whether the contract types it as a pydantic secret."""
    from pydantic import SecretBytes, SecretStr

    def secret_type(annotation: Any) -> bool:
        if isinstance(annotation, type) and issubclass(annotation, SecretStr | SecretBytes):
            return True
        return any(secret_type(a) for a in get_args(annotation))

    return {(info.alias or name): secret_type(info.annotation) for name, info in schema.model_fields.items()}


def _refusal(handler: Handler, payload: dict[str, Any]) -> Exception | None:
    if handler.schema is None:
        return None
    try:
        handler.schema.model_validate(payload)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError: its message is the reason
        return exc
    return None


def _first_lines(exc: Exception) -> str:
    """The validation errors in one line: ``user_id: Input should be a valid integer; ...``."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [f"{'.'.join(map(str, e.get('loc', ()))) or 'payload'}: {e.get('msg')}" for e in errors()]
        return "; ".join(parts)[:500]
    return " ".join(str(exc).split())[:500]


def contracts(app: App) -> dict[str, Any]:
    """The JSON Schema of the envelope and of every declared contract, by event pattern."""
    declared: dict[str, Any] = {}
    for h in app.handlers:
        if h.schema is not None:
            declared.setdefault(h.pattern, h.schema.model_json_schema())
    return {"envelope": ENVELOPE_SCHEMA, "events": declared}
