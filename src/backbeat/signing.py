"""Signed jobs and events: with a signing key configured, every job's payload and every
event sent over a broker or HTTP carries an HMAC-SHA256 signature, and a worker (or an
event consumer) with a key refuses what no key it knows signed. Someone who can write to
the store or publish to the broker, but does not hold a key, cannot make a worker run
anything.

A job's signature is the last member of its payload object, over its task name and the
payload without that member (the exact text, so nothing is re-encoded to check it)::

    {"args":[...],"kwargs":{...},"sig":"bbsig:1:<key id>:<base64url(mac)>"}
    mac = HMAC-SHA256(k, "job\\n" + task + "\\n" + payload without ',"sig":"..."')

An event's signature is the envelope's ``sig`` field, over its name, id and payload::

    mac = HMAC-SHA256(k, "event\\n" + name + "\\n" + id + "\\n" + canonical(payload))
    canonical(payload) = JSON, keys sorted, no whitespace, non-ASCII as \\u escapes
                         (Python: json.dumps(payload, sort_keys=True, separators=(",", ":")))

``k`` is derived from the key with HKDF-SHA256 (info ``backbeat signing v1: hmac``), and
the key id as for secrets, so the id reveals nothing. Keys come from
``Settings.signing_key`` (``BACKBEAT_SIGNING_KEY``) and ``Settings.previous_signing_keys``
(``BACKBEAT_SIGNING_KEYS="new,old,..."``): the first signs, any verifies.

Internal module.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from backbeat.errors import SignatureError
from backbeat.secrets import MIN_KEY_LENGTH, derive

if TYPE_CHECKING:
    from backbeat.config import Settings

PREFIX = "bbsig:1:"
SIGNATURE = re.compile(r"bbsig:1:[0-9a-f]{8}:[A-Za-z0-9_-]{43}")
_JOB_SIG = re.compile(rf',"sig":"({SIGNATURE.pattern})"\}}\Z')


class Signing:
    """The configured signing keys: the first signs, any verifies."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._macs: dict[str, bytes] = {}
        self.ids: tuple[str, ...] = ()
        for position, key in enumerate(keys):
            what = "BACKBEAT_SIGNING_KEY" if position == 0 else f"previous signing key #{position}"
            if len(key) < MIN_KEY_LENGTH:
                raise SignatureError(
                    f"{what} is {len(key)} characters: a key must be at least {MIN_KEY_LENGTH} random "
                    "characters (generate one with `backbeat secrets keygen`)"
                )
            key_id = derive(key, b"backbeat signing v1: key id")[:4].hex()
            if key_id in self._macs:
                raise SignatureError(f"{what} is given twice (key id {key_id})")
            self._macs[key_id] = derive(key, b"backbeat signing v1: hmac")
            self.ids += (key_id,)

    def __repr__(self) -> str:
        return f"<Signing ids={list(self.ids)}>"

    def _mac(self, key_id: str, message: str) -> str:
        digest = hmac.new(self._macs[key_id], message.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        return f"{PREFIX}{key_id}:{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"

    def _check(self, signature: object, message: str, what: str) -> None:
        if not isinstance(signature, str) or not signature.startswith(PREFIX):
            raise SignatureError(f"{what} is not signed, and this process requires signatures (BACKBEAT_SIGNING_KEY)")
        key_id = signature[len(PREFIX) :].partition(":")[0]
        if key_id not in self._macs:
            raise SignatureError(f"{what} is signed with key {key_id!r}, which this process does not know")
        if not hmac.compare_digest(self._mac(key_id, message), signature):
            raise SignatureError(f"{what} does not match its signature: it was altered, or signed for another task")

    # -- jobs ---------------------------------------------------------------------------

    def sign_payload(self, task: str, payload: str) -> str:
        """``payload`` (an encoded ``{"args":...,"kwargs":...}``) with its signature added."""
        unsigned = strip_signature(payload)
        signature = self._mac(self.ids[0], f"job\n{task}\n{unsigned}")
        return f'{unsigned[:-1]},"sig":"{signature}"}}'

    def verify_payload(self, task: str, payload: str, what: str) -> None:
        """Raise ``SignatureError`` unless a known key signed ``payload`` for ``task``."""
        match = _JOB_SIG.search(payload)
        signature = match.group(1) if match else None
        unsigned = payload[: match.start()] + "}" if match else payload
        self._check(signature, f"job\n{task}\n{unsigned}", what)

    # -- events -------------------------------------------------------------------------

    def sign_event(self, name: str, event_id: str, payload: Mapping[str, Any]) -> str:
        return self._mac(self.ids[0], _event_message(name, event_id, payload))

    def verify_event(self, envelope: Mapping[str, Any], event_id: str) -> None:
        name = envelope.get("name")
        what = f"event {name} ({event_id})"
        self._check(envelope.get("sig"), _event_message(str(name), event_id, envelope.get("payload") or {}), what)


def _event_message(name: str, event_id: str, payload: Mapping[str, Any]) -> str:
    return f"event\n{name}\n{event_id}\n{json.dumps(payload, sort_keys=True, separators=(',', ':'))}"


def strip_signature(payload: str) -> str:
    """A job payload without its signature (the payload itself if it has none)."""
    match = _JOB_SIG.search(payload)
    return payload[: match.start()] + "}" if match else payload


def signing(settings: Settings) -> Signing | None:
    """The signing keys ``settings`` configure, or ``None`` when signing is off."""
    if settings.signing_key is None:
        return None
    return _signing((settings.signing_key, *settings.previous_signing_keys))


@functools.lru_cache(maxsize=8)
def _signing(keys: tuple[str, ...]) -> Signing:
    return Signing(keys)


def signed_by_current(settings: Settings, payload: str) -> bool:
    """Whether ``payload`` needs no new signature: signing is off, or the current key signed it."""
    keys = signing(settings)
    if keys is None:
        return True
    match = _JOB_SIG.search(payload)
    return match is not None and match.group(1).startswith(f"{PREFIX}{keys.ids[0]}:")


def sign_payload(settings: Settings, task: str, payload: str) -> str:
    """``payload`` signed for ``task`` if a signing key is configured, else as it is."""
    keys = signing(settings)
    return payload if keys is None else keys.sign_payload(task, payload)
