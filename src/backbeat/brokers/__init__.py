"""Event transports: where events come from (sources) and how a client sends them
(publishers), one module per broker.

A **source** feeds a running ``backbeat run``/``backbeat scheduler`` (``--source URL``)
with raw messages; it acknowledges a message to its broker only after ``accept`` has
returned, that is after the event (and its handlers' jobs) is durable in the store.
A **publisher** is what ``Client(url).emit`` uses for a broker URL; a failure to reach the
broker is a ``ConnectionError`` (the client retries it within its ``send_timeout``).

Default names (overridable in the URL's query): RabbitMQ topic exchange
``backbeat.events``, routing key = event name, durable queue ``backbeat.events.<app>``;
NATS JetStream stream ``BACKBEAT_EVENTS`` on subjects ``events.<name>``.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from backbeat.errors import ConfigError
from backbeat.events import envelope
from backbeat.signing import Signing
from backbeat.types import NewEvent

BROKER_SCHEMES = ("amqp", "amqps", "nats", "tls", "http", "https")
"""URL schemes that name a broker (or an HTTP endpoint), not a store."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message as a source received it."""

    raw: bytes
    source: str
    """Where it came from, without credentials (``amqp://host/vhost``)."""
    fallback_id: str | None = None
    """The broker's own id of the message (stable across redeliveries), used as the
    event id when the envelope carries none."""


Accept = Callable[[Sequence[Incoming]], Awaitable[None]]
"""Store a batch durably (settled events and their jobs); raises if it could not."""


class Source(abc.ABC):
    """A stream of event messages from one broker."""

    url: str

    @abc.abstractmethod
    async def run(self, accept: Accept, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, reconnecting with backoff when the broker goes
        away; acknowledge each message only after ``accept`` returned for it."""


class Publisher(abc.ABC):
    """Sends events to one broker; ``ConnectionError`` when it cannot be reached."""

    url: str
    signing: Signing | None = None
    """Signs each envelope sent, when a signing key is configured."""

    @abc.abstractmethod
    async def publish(self, events: Sequence[NewEvent]) -> None:
        """Hand every event to the broker and wait for its confirmation."""

    def body(self, event: NewEvent) -> dict[str, Any]:
        """The envelope sent for ``event`` (signed if this publisher signs)."""
        return envelope(event, self.signing)

    @abc.abstractmethod
    async def close(self) -> None: ...


def is_broker_url(url: object) -> bool:
    return isinstance(url, str) and url.split("://", 1)[0].lower() in BROKER_SCHEMES and "://" in url


def split_options(url: str, known: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The URL without our query options, and the options (``known`` gives defaults);
    an unknown option is an error naming the ones we take."""
    parts = urlsplit(url)
    given = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(
            f"{parts.scheme}:// URL has unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return urlunsplit(parts._replace(query="")), {**known, **given}


def redact(url: str) -> str:
    """``url`` without its password, for logs and event records."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def open_source(url: str, *, app_name: str) -> Source:
    """The source for ``url`` (``amqp://``, ``nats://``), not yet connected."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("amqp", "amqps"):
        from backbeat.brokers.amqp import AmqpSource

        return AmqpSource(url, app_name=app_name)
    if scheme in ("nats", "tls"):
        from backbeat.brokers.nats import NatsSource

        return NatsSource(url, app_name=app_name)
    raise ConfigError(
        f"--source {redact(url) if scheme else url!r}: expected amqp://... (RabbitMQ) or nats://... (NATS "
        "JetStream); the store's own events are always consumed, and HTTP events arrive through "
        "the dashboard's POST /api/events"
    )


def open_publisher(url: str, *, token: str | None = None, signing: Signing | None = None) -> Publisher:
    """The publisher for a broker URL, not yet connected."""
    scheme = url.split("://", 1)[0].lower()
    publisher: Publisher
    if scheme in ("amqp", "amqps"):
        from backbeat.brokers.amqp import AmqpPublisher

        publisher = AmqpPublisher(url)
    elif scheme in ("nats", "tls"):
        from backbeat.brokers.nats import NatsPublisher

        publisher = NatsPublisher(url)
    else:
        from backbeat.brokers.http import HttpPublisher

        publisher = HttpPublisher(url, token=token)
    publisher.signing = signing
    return publisher


def missing(package: str, extra: str, url: str) -> ConfigError:
    return ConfigError(f"{redact(url)} needs {package}: pip install 'backbeat[{extra}]'")


def number_option(options: Mapping[str, str], name: str, url: str) -> float:
    """A positive number from the URL's query options, or ``ConfigError`` naming it."""
    raw = options[name]
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError(f"{redact(url)}: option {name} must be a positive number, got {raw!r}")
    return value
