"""Secrets at rest: the values of arguments and event fields declared secret are sealed
(AES-256-GCM) before they reach any store, and opened only where a task is about to run.

A sealed value is a JSON string that names the key it was sealed with::

    bbsecret:1:<key id>:<base64url(nonce[12] + ciphertext + tag[16])>

The plaintext is the compact JSON of the value (any JSON value can be secret). The
associated data binds a sealed value to where it belongs (``task:<name>`` or
``event:<name>``, plus the parameter or field name), so a sealed token moved to another
task or field does not open.

Keys come from ``Settings.secret_key`` (``BACKBEAT_SECRET_KEY``) and
``Settings.previous_secret_keys`` (``BACKBEAT_SECRET_KEYS="new,old,..."``): values are
sealed with the current key and opened with whichever key their id names. A key is any
string of at least ``MIN_KEY_LENGTH`` characters of randomness (``backbeat secrets
keygen``); the AES key and the 8-hex-digit key id are derived from it with HKDF-SHA256,
so the id reveals nothing about the key.

Where secrets are shown (CLI, HTTP API, dashboard, decision details) a sealed value is
``***`` (``redact``); where a task's error message or traceback would repeat an opened
value, the value is replaced by ``***`` too (``scrub``).

Internal module.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backbeat.errors import EnqueueError, SecretError, TaskDefinitionError
from backbeat.serialization import decode_payload
from backbeat.types import TaskInfo

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from backbeat.config import Settings

PREFIX = "bbsecret:1:"
REDACTED = "***"
MIN_KEY_LENGTH = 16
SEALED = re.compile(r"bbsecret:1:[0-9a-f]{8}:[A-Za-z0-9_-]+")
"""A sealed value anywhere in a text (for redacting messages that quote payloads)."""
NONCE = 12
SCRUB_MIN = 4
"""Opened values shorter than this are not scrubbed from error messages (they would
mangle the message and are not secrets worth the name)."""
KEY_HELP = "set BACKBEAT_SECRET_KEY (generate one with `backbeat secrets keygen`; see docs/secrets.md)"


def derive(key: str, purpose: bytes) -> bytes:
    # cryptography is imported where a key is used, not at start-up (65 ms of every process)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"backbeat", info=purpose).derive(key.encode())


class Keyring:
    """The configured keys: the first seals, any opens.

    A key too short to be one is reported when the keyring is first used to seal or open
    (``BACKBEAT_SECRET_KEY`` also keys rate-limit bucket names, which ask nothing of it).
    """

    def __init__(self, keys: Sequence[str]) -> None:
        self._ciphers: dict[str, AESGCM] = {}
        self.ids: tuple[str, ...] = ()
        self.problem: str | None = None
        if keys:  # imported only when a key is configured: every worker builds a keyring
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        for position, key in enumerate(keys):
            what = "BACKBEAT_SECRET_KEY" if position == 0 else f"previous secret key #{position}"
            key_id = derive(key, b"backbeat secrets v1: key id")[:4].hex()
            if len(key) < MIN_KEY_LENGTH:
                self.problem = self.problem or (
                    f"{what} is {len(key)} characters: a key must be at least {MIN_KEY_LENGTH} random "
                    "characters (generate one with `backbeat secrets keygen`)"
                )
            elif key_id in self._ciphers:
                self.problem = self.problem or f"{what} is given twice (key id {key_id})"
            self._ciphers[key_id] = AESGCM(derive(key, b"backbeat secrets v1: aes-256-gcm"))
            self.ids += (key_id,)

    def __repr__(self) -> str:
        return f"<Keyring ids={list(self.ids)}>"

    @property
    def current(self) -> str | None:
        """The id of the key that seals, or ``None`` when no key is configured."""
        return self.ids[0] if self.ids else None

    def require(self, what: str) -> str:
        """The current key id; ``SecretError`` saying ``what`` needs one when none is set
        (or saying what is wrong with the keys set)."""
        if not self.ids:
            raise SecretError(f"{what}: {KEY_HELP}")
        if self.problem is not None:
            raise SecretError(self.problem)
        return self.ids[0]

    def seal(self, value: Any, *, aad: str, what: str) -> str:
        """``value`` sealed with the current key; ``SecretError`` saying ``what`` needs a key when none is set."""
        key_id = self.require(what)
        nonce = os.urandom(NONCE)
        plain = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        sealed = self._ciphers[key_id].encrypt(nonce, plain, aad.encode())
        return f"{PREFIX}{key_id}:{base64.urlsafe_b64encode(nonce + sealed).rstrip(b'=').decode()}"

    def reveal(self, text: str, *, aad: str, what: str) -> Any:
        """The value ``text`` seals; ``SecretError`` naming ``what`` if it does not open."""
        if self.problem is not None:
            raise SecretError(self.problem)
        key_id, _, data = text[len(PREFIX) :].partition(":")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            configured = ", ".join(self.ids) or "none"
            raise SecretError(
                f"{what} was sealed with key id {key_id}, which is not configured (configured: {configured}); "
                "add that key to BACKBEAT_SECRET_KEYS"
            )
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
            plain = cipher.decrypt(raw[:NONCE], raw[NONCE:], aad.encode())
        except (InvalidTag, ValueError):
            raise SecretError(
                f"{what} does not open with key id {key_id}: it was altered, or sealed for another task or field"
            ) from None
        return json.loads(plain)


@functools.lru_cache(maxsize=16)
def _keyring(keys: tuple[str, ...]) -> Keyring:
    return Keyring(keys)


def keyring(settings: Settings) -> Keyring:
    """The keys ``settings`` configure (built once per distinct configuration)."""
    if settings.secret_key is None:
        return _keyring(())
    return _keyring((settings.secret_key, *settings.previous_secret_keys))


def secret_names(secret: object, what: str, error: type[Exception] = TaskDefinitionError) -> tuple[str, ...]:
    """``secret=`` validated: a tuple (or list) of non-empty names, in order, once each."""
    if isinstance(secret, str) or not isinstance(secret, list | tuple | frozenset | set):
        raise error(f'{what}: secret must be a tuple of names, e.g. secret=("token",), got {secret!r}')
    for name in secret:
        if not isinstance(name, str) or not name:
            raise error(f"{what}: secret names must be non-empty strings, got {name!r}")
    return tuple(dict.fromkeys(sorted(secret) if isinstance(secret, set | frozenset) else secret))


def require_keys(tasks: Iterable[TaskInfo], settings: Settings) -> None:
    """Refuse to start a process that runs tasks declaring secrets without a usable key."""
    for info in tasks:
        if info.secret:
            kind = "event handler" if info.handles else "task"
            what = "payload fields" if info.handles else "arguments"
            keyring(settings).require(f"{kind} {info.name!r} declares secret {what} ({', '.join(info.secret)})")
            return


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def task_context(task: str) -> str:
    return f"task:{task}"


def event_context(name: str) -> str:
    return f"event:{name}"


def _aad(context: str, field: str) -> str:
    return f"{context}\x00{field}"


def seal_fields(
    values: Mapping[str, Any], names: Collection[str], keys: Keyring, context: str, *, what: str
) -> dict[str, Any]:
    """``values`` with each of ``names`` present sealed (values already sealed stay as they
    are). With no key configured: ``SecretError`` saying ``what`` needs one."""
    out = dict(values)
    for name in names:
        if name in out and not is_sealed(out[name]):
            out[name] = keys.seal(out[name], aad=_aad(context, name), what=what)
    return out


def open_fields(values: Mapping[str, Any], keys: Keyring, context: str) -> tuple[dict[str, Any], list[str]]:
    """``values`` with every sealed value opened, and the opened values as text (for
    ``scrub``). Raises ``SecretError`` naming the field that does not open."""
    out = dict(values)
    opened: list[str] = []
    for name, value in values.items():
        if is_sealed(value):
            out[name] = keys.reveal(
                value, aad=_aad(context, name), what=f"secret {name!r} of {context.replace(':', ' ', 1)}"
            )
            opened.append(out[name] if isinstance(out[name], str) else json.dumps(out[name], ensure_ascii=False))
    return out, opened


def open_arguments(info: TaskInfo, kwargs: Mapping[str, Any], keys: Keyring) -> tuple[dict[str, Any], list[str]]:
    """A job's keyword arguments with their sealed values opened (for an event handler:
    the sealed fields of the event's payload), and the opened values (for ``scrub``):
    the one place a job's secrets are opened."""
    if info.handles is None:
        return open_fields(kwargs, keys, task_context(info.name))
    event = kwargs.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("payload"), dict):
        return dict(kwargs), []
    payload, opened = open_fields(event["payload"], keys, event_context(str(event.get("name"))))
    return {**kwargs, "event": {**event, "payload": payload}}, opened


def reseal(kwargs: Mapping[str, Any], declared: Collection[str], keys: Keyring, task: str) -> dict[str, Any] | None:
    """A schedule's keyword arguments brought up to date: values sealed with an older key
    sealed again with the current one, and plain values of ``declared`` parameters sealed;
    ``None`` when nothing needs it."""
    sealed = [n for n, v in kwargs.items() if is_sealed(v)]
    plain = [n for n in declared if n in kwargs and not is_sealed(kwargs[n])]
    if not sealed and not plain:
        return None  # nothing secret: no key needed
    current = f"{PREFIX}{keys.require(f'resealing task {task!r}')}:"
    stale = [n for n in sealed if not kwargs[n].startswith(current)]
    if not stale and not plain:
        return None
    context = task_context(task)
    opened, _ = open_fields({n: kwargs[n] for n in stale}, keys, context)
    what = f"task {task!r} declares secret arguments"
    return seal_fields({**kwargs, **opened}, [*stale, *plain], keys, context, what=what)


def same_values(old: str, new: str, task: str, keys: Keyring) -> bool:
    """Whether two encoded payloads of ``task`` hold the same values, ``old`` sealed with
    the current key only (so keeping ``old`` instead of ``new`` changes nothing)."""
    try:
        (old_args, old_kwargs), (new_args, new_kwargs) = decode_payload(old), decode_payload(new)
        if any(is_sealed(v) and not v.startswith(f"{PREFIX}{keys.current}:") for v in old_kwargs.values()):
            return False
        context = task_context(task)
        return (old_args, open_fields(old_kwargs, keys, context)[0]) == (
            new_args,
            open_fields(new_kwargs, keys, context)[0],
        )
    except (SecretError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class Sealer:
    """Seals the named values of one task's arguments or one event's payload."""

    names: tuple[str, ...]
    keys: Keyring
    context: str
    what: str
    """Who declared them, for the error when no key is configured."""

    def seal(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return seal_fields(values, self.names, self.keys, self.context, what=self.what)


def for_task(info: TaskInfo, settings: Settings) -> Sealer | None:
    """The sealer of a task's arguments, or ``None`` if it declares no secret parameter."""
    if not info.secret or info.handles is not None:
        return None
    what = f"task {info.name!r} declares secret arguments ({', '.join(info.secret)})"
    return Sealer(info.secret, keyring(settings), task_context(info.name), what)


def for_event(name: str, fields: Collection[str], settings: Settings) -> Sealer:
    """The sealer of an event's payload: ``fields`` to seal; any sealed field opens."""
    what = f"event {name} has secret fields ({', '.join(sorted(fields))})"
    return Sealer(tuple(fields), keyring(settings), event_context(name), what)


def refuse_positional(info: TaskInfo, args: Sequence[Any]) -> None:
    """Without a task's code, which positional argument is secret is unknown: refuse them."""
    if args and info.secret and info.handles is None:
        raise EnqueueError(
            f"task {info.name!r} declares secret arguments ({', '.join(info.secret)}): pass its arguments by "
            "keyword (kwargs=), so that backbeat knows which to seal"
        )


def redact(value: Any) -> Any:
    """``value`` with every sealed value in it shown as ``***`` (for display)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_text(text: str) -> str:
    """``text`` with every sealed value quoted in it shown as ``***``."""
    return SEALED.sub(REDACTED, text) if PREFIX in text else text


def scrub(text: str, opened: Sequence[str]) -> str:
    """``text`` (an error message, a traceback) with each opened secret replaced by ``***``."""
    for value in sorted(opened, key=len, reverse=True):
        if len(value) >= SCRUB_MIN:
            text = text.replace(value, REDACTED)
    return text


def keygen() -> str:
    """A new random key (256 bits, URL-safe text)."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
