"""The JSON codec: the only place job payloads and results are encoded and decoded.

JSON only, never pickle. Values must survive a round trip unchanged, so anything JSON
would silently alter is refused with the path of the offending value: non-string dict
keys (JSON turns ``1`` into ``"1"``), NaN and infinities, and objects JSON does not know.
Tuples are accepted and arrive as lists. So is what no store could keep or read back:
values nested deeper than ``MAX_DEPTH`` (or containing themselves), and text that is not
valid Unicode (a lone surrogate such as ``"\ud800"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from backbeat.errors import PayloadError

if TYPE_CHECKING:
    from backbeat.secrets import Sealer

_SCALARS = str | int | bool | None
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
MAX_DEPTH = 100
"""Deepest nesting of lists and objects in a payload."""
MAX_INT_BITS = 13_300
"""Largest integer (about 4,000 digits): Python writes and reads at most 4,300 as text."""


def _short(path: str) -> str:
    return path if len(path) <= 80 else path[:77] + "..."


def _check_scalar(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{path} is {value!r}: JSON has no NaN or infinity")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise PayloadError(f"{_short(path)} is an integer of more than 4,000 digits, which JSON text cannot carry")


def check_json(value: Any, path: str, depth: int = 0) -> None:
    """Raise ``PayloadError`` naming ``path`` if ``value`` would not round-trip through JSON."""
    if isinstance(value, _SCALARS | float):
        _check_scalar(value, path)
        return
    if depth >= MAX_DEPTH and isinstance(value, dict | list | tuple):
        raise PayloadError(f"{_short(path)} is nested more than {MAX_DEPTH} levels deep (or contains itself)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(
                    f"{path} has a key of type {type(key).__name__} ({key!r}): JSON object keys must be strings"
                )
            check_json(item, f"{path}[{key!r}]", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(item, f"{path}[{index}]", depth + 1)
        return
    raise PayloadError(
        f"{path} is of type {type(value).__name__}, which is not JSON-serialisable "
        "(pass ids and plain data, not objects)"
    )


def encode_payload(args: Sequence[Any], kwargs: Mapping[str, Any], *, limit: int, sealer: Sealer | None = None) -> str:
    """Encode a job's arguments as ``{"args": [...], "kwargs": {...}}`` within ``limit``
    bytes, the secret ones (``sealer``) sealed: the one place arguments are sealed."""
    for index, arg in enumerate(args):
        check_json(arg, f"args[{index}]")
    for key, arg in kwargs.items():
        check_json(arg, f"kwargs[{key!r}]")
    if sealer is not None:
        kwargs = sealer.seal(kwargs)
    text = _ENCODER.encode({"args": list(args), "kwargs": dict(kwargs)})
    _check_size(text, "payload", limit)
    return text


def decode_payload(text: str) -> tuple[list[Any], dict[str, Any]]:
    data = json.loads(text)
    return list(data.get("args", ())), dict(data.get("kwargs", {}))


def encode_result(value: Any, *, limit: int) -> str:
    if value is None:
        return "null"
    check_json(value, "result")
    text = _ENCODER.encode(value)
    _check_size(text, "result", limit)
    return text


def decode_result(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def parse_json(text: str, what: str) -> Any:
    """Parse user-given JSON (``--kwargs``, ``--payload``) with a message naming ``what``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise PayloadError(f"{what} is not acceptable JSON: {exc}") from None
    except RecursionError:
        raise PayloadError(f"{what} is nested too deeply") from None


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """Parse user-given JSON that must be an object, with a message naming ``what``."""
    value = parse_json(text, what)
    if not isinstance(value, dict):
        raise PayloadError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def parse_json_array(text: str, what: str) -> list[Any]:
    value = parse_json(text, what)
    if not isinstance(value, list):
        raise PayloadError(f"{what} must be a JSON array, got {type(value).__name__}")
    return value


def utf8_size(text: str, what: str) -> int:
    """Bytes of ``text`` in UTF-8; ``PayloadError`` if it holds a lone surrogate (no store keeps one)."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode())
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        raise PayloadError(f"{what} holds text that is not valid Unicode (the lone surrogate {bad!r})") from None


def _check_size(text: str, what: str, limit: int) -> None:
    size = utf8_size(text, what)
    if size > limit:
        raise PayloadError(
            f"{what} is {size:,} bytes, over the limit of {limit:,} bytes "
            "(raise max_payload_bytes / BACKBEAT_MAX_PAYLOAD_BYTES, or pass a reference instead of the data)"
        )
