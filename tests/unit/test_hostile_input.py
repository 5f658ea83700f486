"""Hostile input to every parser (hypothesis): the resque-scheduler YAML loader, the event
envelope, cron expressions, durations and the CLI's JSON arguments. Each either accepts
the input or refuses it with a ``BackbeatError`` that says why: never another exception,
and never a partial write."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbeat import App
from backbeat import cron as cron_mod
from backbeat.cli import jobs as _jobs_commands  # noqa: F401 - registers `backbeat enqueue`
from backbeat.cli.main import cli
from backbeat.clock import iso
from backbeat.config import MAX_SECONDS
from backbeat.errors import BackbeatError, EventError, PayloadError, ScheduleError
from backbeat.events import parse
from backbeat.resque import KNOWN, ScheduleFileError
from backbeat.resque import parse as parse_yaml
from backbeat.schedules import parse_duration
from backbeat.serialization import parse_json_array, parse_json_object
from backbeat.testing import ManualClock
from backbeat.types import JobFilter

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STORE_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NASTY = [
    "'; DROP TABLE backbeat_jobs; --",
    '" OR "1"="1',
    "Robert'); DELETE FROM backbeat_schedules;--",
    "*",
    "{slot}:*",
    "\r\nFLUSHALL\r\n",
    "EVAL \"return redis.call('flushall')\" 0",
    "%s%n%x",
    "../../etc/passwd",
    "\\",
    "_%",
    "null",
    "🐍 名前 \u202eevil e\u0301",
    " padded ",
    "a\tb\nc",
    "\ud800",
    "\x00",
    "a" * 600,
]
TEXT = st.one_of(st.sampled_from(NASTY), st.text(max_size=60))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSONISH = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)


def refused_cleanly(exc: BaseException, naming: str = "") -> None:
    assert isinstance(exc, BackbeatError), f"{type(exc).__name__}: {exc}"
    assert str(exc).strip(), "an error without a message"
    assert naming in str(exc)


# -- the YAML loader -----------------------------------------------------------------------


@FUZZ
@given(
    text=st.one_of(st.text(max_size=300), st.sampled_from(["a: &a [*a]", "[" * 3000, "? [a]\n: 1", "1: {every: 5}"]))
)
def test_any_text_is_a_schedule_file_or_a_clear_error(text: str) -> None:
    try:
        entries, problems = parse_yaml(text)
    except ScheduleFileError as exc:
        refused_cleanly(exc)
        return
    assert all(isinstance(p, str) and p for p in problems)
    assert all(isinstance(e.name, str) for e in entries)


ENTRY = st.dictionaries(st.sampled_from(sorted(KNOWN | {"rails_env", "bogus"})), JSONISH, max_size=6)
ENTRY |= st.fixed_dictionaries(
    {"every": st.sampled_from(["30s", "5m", 20, "1h30m", -1, "x"])}, optional={"args": JSONISH}
)
ENTRY |= st.fixed_dictionaries(
    {"cron": st.sampled_from(["*/5 * * * *", "30 6 * * 1 Europe/Stockholm", "@hourly", "61 * * * *"])},
    optional={"class": st.sampled_from(["t", "nope"]), "args": JSONISH, "description": TEXT, "tz": TEXT},
)
FILES = st.dictionaries(st.one_of(TEXT, st.integers()), ENTRY, max_size=4)


@pytest.fixture(scope="module")
def loader_app(tmp_path_factory: pytest.TempPathFactory) -> App:
    app = App(f"sqlite:///{tmp_path_factory.mktemp('yaml')}/s.db", clock=ManualClock(1_800_000_000.0))

    @app.task(name="t")
    def t(*args: Any, **kwargs: Any) -> None: ...

    return app


@STORE_FUZZ
@given(data=FILES)
def test_a_schedule_file_is_applied_whole_or_not_at_all(loader_app: App, data: dict[Any, Any]) -> None:
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except (yaml.YAMLError, UnicodeEncodeError):
        return  # not something a file could hold
    before = {r.key: r.spec for r in loader_app.schedules.list(limit=1000)}
    try:
        report = loader_app.schedules.load(text)
    except BackbeatError as exc:
        refused_cleanly(exc)
        assert {r.key: r.spec for r in loader_app.schedules.list(limit=1000)} == before  # nothing applied
        return
    after = {r.key: r for r in loader_app.schedules.list(limit=1000)}
    assert set(report.added + report.changed + report.unchanged) <= set(after)
    for record in after.values():  # everything stored can be shown
        assert json.dumps({"next_at": iso(record.next_at), "payload": record.spec.payload})


# -- the event envelope --------------------------------------------------------------------

ENVELOPES = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["account.linked", "a.b\n", "a..b", "x" * 201]), TEXT), "payload": JSONISH},
    optional={
        "id": st.one_of(TEXT, st.integers(), st.none()),
        "key": st.one_of(TEXT, st.none()),
        "occurred_at": st.one_of(SCALARS, st.sampled_from(["2026-11-28T10:00:00Z", "9999-12-31T23:59:59-14:00"])),
        "extra": SCALARS,
    },
)


def _raw_envelopes(envelope: dict[str, Any]) -> str:
    return json.dumps(envelope, allow_nan=True)


RAW = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    ENVELOPES.map(_raw_envelopes),
    st.sampled_from(
        [
            '{"name": "a.b", "payload": {"x": NaN}}',
            '{"name": "a.b", "payload": {}, "occurred_at": ' + "9" * 400 + "}",
            '{"name": "a.b", "payload": {}, "occurred_at": 1e999}',
            '{"name": "a.b", "payload": {"k": "\\ud800"}}',
            '{"name": "a.b", "payload": {"n": ' + "1" * 5000 + "}}",
            "[" * 100_000,
        ]
    ),
)


@FUZZ
@given(raw=RAW)
def test_any_message_is_an_event_or_a_clear_error(raw: str | bytes) -> None:
    try:
        event = parse(raw, source="fuzz", received=1_800_000_000.0, limit=10_000)
    except EventError as exc:
        refused_cleanly(exc)
        return
    for text in (event.payload, event.id, event.key or ""):
        text.encode()  # what every store must be able to write
    assert "\x00" not in event.id and "\x00" not in (event.key or "")
    assert math.isfinite(event.occurred_at) and iso(event.occurred_at)
    assert isinstance(json.loads(event.payload), dict)


# -- cron and durations ----------------------------------------------------------------------

FIELD = st.one_of(
    st.sampled_from(["*", "?", "L", "W", "LW", "5L", "1#2", "MON-FRI", "JAN", "*/0", "-", ",", ""]),
    st.integers(min_value=-5, max_value=100).map(str),
    st.tuples(st.integers(0, 70), st.integers(0, 70)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.tuples(st.integers(0, 70), st.integers(0, 70)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.tuples(st.integers(0, 40), st.integers(0, 40)).map(lambda t: f"*/{t[0]},{t[1]}"),
)
CRON = st.one_of(
    st.lists(FIELD, min_size=1, max_size=8).map(" ".join),
    st.text(max_size=40),
    st.sampled_from(["@hourly", "@reboot", "@", "0 0 30 2 *", "0 0 31 4 *", "0 0 29 2 *", "0 0 * 2 1#5"]),
)
ZONES = st.one_of(st.sampled_from(["UTC", "Europe/Stockholm", "America", "../etc/passwd", "", "\x00", "\ud800"]), TEXT)


@FUZZ
@given(expr=CRON, tz=ZONES, after=st.floats(min_value=0, max_value=4_000_000_000))
def test_any_cron_expression_fires_in_the_future_or_is_a_clear_error(expr: str, tz: str, after: float) -> None:
    try:
        text = cron_mod.normalise(expr)
        cron_mod.zone(tz)
    except ScheduleError as exc:
        refused_cleanly(exc)
        return
    assert cron_mod.next_after(text, tz, after) > after


@FUZZ
@given(
    value=st.one_of(
        TEXT,
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(),
        st.timedeltas(),
        st.sampled_from(["1e400", "nan", "1h30m", "5m5m", "9" * 500 + "s", "\u0661s", "-0"]),
        JSONISH,
    )
)
def test_any_duration_is_seconds_or_a_clear_error(value: Any) -> None:
    try:
        seconds = parse_duration(value, "interval")
    except ScheduleError as exc:
        refused_cleanly(exc)
        return
    assert 0 <= seconds <= MAX_SECONDS
    if isinstance(value, timedelta):
        assert seconds == value.total_seconds()


# -- the CLI's JSON arguments --------------------------------------------------------------

JSON_TEXT = st.one_of(
    st.text(max_size=100),
    JSONISH.map(lambda v: json.dumps(v, allow_nan=True)),
    st.sampled_from(["[" * 100_000, '{"a": ' + "1" * 5000 + "}", '{"a": NaN}', '["\\ud800"]', '{"a": "\\u0000"}']),
)


@FUZZ
@given(text=JSON_TEXT)
def test_json_arguments_parse_or_say_why(text: str) -> None:
    for parser, kind in ((parse_json_object, dict), (parse_json_array, list)):
        try:
            value = parser(text, "--kwargs")
        except PayloadError as exc:
            refused_cleanly(exc, naming="--kwargs")
            continue
        assert isinstance(value, kind)


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('cli')}/s.db"


def _job_count(url: str) -> int:
    app = App(url)

    async def count() -> int:
        return len(await (await app.client.astore()).job_list(JobFilter(limit=10_000)))

    try:
        return app.client.sync(count)
    finally:
        app.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kwargs=JSON_TEXT, args=JSON_TEXT)
def test_the_cli_enqueues_or_fails_in_one_line_writing_nothing(cli_store: str, kwargs: str, args: str) -> None:
    before = _job_count(cli_store)
    result = CliRunner().invoke(
        cli, ["enqueue", "t", "--force", "--kwargs", kwargs, "--args", args, "--url", cli_store, "--json"]
    )
    if result.exit_code == 0:
        assert _job_count(cli_store) == before + 1
        return
    assert result.exit_code == 1, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("backbeat: error: "), result.output
    assert _job_count(cli_store) == before
