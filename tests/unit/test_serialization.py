import math

import pytest

from backbeat.errors import PayloadError
from backbeat.serialization import (
    check_json,
    decode_payload,
    encode_payload,
    encode_result,
    parse_json_array,
    parse_json_object,
)


def test_payload_round_trips_plain_data() -> None:
    args = [1, "two", 3.5, None, True, [1, [2]], {"a": {"b": "ü"}}]
    kwargs = {"user_id": 1, "tags": ("x", "y")}
    got_args, got_kwargs = decode_payload(encode_payload(args, kwargs, limit=10_000))
    assert got_args == args
    assert got_kwargs == {"user_id": 1, "tags": ["x", "y"]}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (object(), "kwargs['x'] is of type object"),
        ({1: "a"}, "has a key of type int"),
        (math.nan, "JSON has no NaN"),
        ([1, {"deep": {2, 3}}], "kwargs['x'][1]['deep'] is of type set"),
        (b"bytes", "of type bytes"),
    ],
)
def test_values_json_would_alter_or_refuse_are_named(value: object, fragment: str) -> None:
    with pytest.raises(PayloadError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        encode_payload([], {"x": value}, limit=10_000)


def test_payload_over_the_limit_is_refused_with_both_sizes() -> None:
    with pytest.raises(PayloadError, match=r"over the limit of 100 bytes"):
        encode_payload(["x" * 200], {}, limit=100)


def test_multibyte_text_counts_bytes() -> None:
    text = "é" * 60  # 120 bytes in UTF-8
    with pytest.raises(PayloadError):
        encode_payload([text], {}, limit=100)


def test_result_is_checked_like_arguments() -> None:
    assert encode_result({"ok": [1, 2]}, limit=100) == '{"ok":[1,2]}'
    with pytest.raises(PayloadError, match="result is of type"):
        encode_result(object(), limit=100)
    check_json(None, "x")


def test_cli_json_arguments_must_have_the_right_shape() -> None:
    assert parse_json_object('{"a": 1}', "--kwargs") == {"a": 1}
    with pytest.raises(PayloadError, match="--kwargs is not valid JSON"):
        parse_json_object("{a: 1}", "--kwargs")
    with pytest.raises(PayloadError, match="--kwargs must be a JSON object, got list"):
        parse_json_object("[1]", "--kwargs")
    with pytest.raises(PayloadError, match="--args must be a JSON array"):
        parse_json_array("{}", "--args")
