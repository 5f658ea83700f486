"""The JSON codec: the only place job payloads and results are encoded and decoded.

JSON only, never pickle. Values must survive a round trip unchanged, so anything JSON
would silently alter is refused with the path of the offending value: non-string dict
keys (JSON turns ``1`` into ``"1"``), NaN and infinities, and objects JSON does not know.
Tuples are accepted and arrive as lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from backbeat.errors import PayloadError

if TYPE_CHECKING:
    from backbeat.secrets import Sealer

_SCALARS = (str, int, bool, type(None))
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_json(value: Any, path: str) -> None:
    """Raise ``PayloadError`` naming ``path`` if ``value`` would not round-trip through JSON."""
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(f"{path} is {value!r}: JSON has no NaN or infinity")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(
                    f"{path} has a key of type {type(key).__name__} ({key!r}): JSON object keys must be strings"
                )
            check_json(item, f"{path}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(item, f"{path}[{index}]")
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


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """Parse user-given JSON (``--kwargs``) that must be an object, with a message naming ``what``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(value, dict):
        raise PayloadError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def parse_json_array(text: str, what: str) -> list[Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(value, list):
        raise PayloadError(f"{what} must be a JSON array, got {type(value).__name__}")
    return value


def _check_size(text: str, what: str, limit: int) -> None:
    size = len(text) if text.isascii() else len(text.encode())
    if size > limit:
        raise PayloadError(
            f"{what} is {size:,} bytes, over the limit of {limit:,} bytes "
            "(raise max_payload_bytes / BACKBEAT_MAX_PAYLOAD_BYTES, or pass a reference instead of the data)"
        )
