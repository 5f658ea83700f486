"""resque-scheduler YAML: the talk's file, every form users bring, all-or-nothing errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from backbeat import App, ManualClock
from backbeat.ids import uuid7
from backbeat.resque import ScheduleFileError, parse
from backbeat.types import ScheduleKind, ScheduleOrigin

TALK = """\
CancelAbandonedOrders:
  cron: "*/5 * * * *"

clear_leaderboards_contributors:
  cron: "30 6 * * 1"
  class: "ClearLeaderboards"
  queue: low
  args: contributors
  description: "Reset the weekly leaders"
"""

FORMS = """\
stockholm_report:
  cron: "30 6 * * 1 Europe/Stockholm"
  class: Report
poll_feeds:
  every: ["30s", {first_in: "120s"}]
  class: Report
  args: [1, "two"]
ruby_symbols:
  every: ["5m", {":first_in": "1m", ":blocking": true}]
  class: Report
  args: {region: eu, limit: 10}
  rails_env: production
  persist: true
seconds_cron:
  cron: "*/15 * * * * *"
  class: Report
  sla: 30s
  tz: America/New_York
  args:
empty_args:
  every: 1h
  class: Report
  args: []
  custom_job_class: Foo
"""


@pytest.fixture
def app() -> Iterator[App]:
    app = App(f"memory://{uuid7()}", clock=ManualClock())

    @app.task(name="CancelAbandonedOrders")
    def cancel_abandoned_orders() -> None: ...

    @app.task(name="ClearLeaderboards", queue="default")
    def clear_leaderboards(board: str) -> None: ...

    @app.task(name="Report")
    def report(*args: object, **kwargs: object) -> None: ...

    yield app
    app.close()


def test_the_talks_yaml_loads_exactly(app: App) -> None:
    report = app.schedules.load(TALK, "talk.yml")
    assert sorted(report.added) == ["CancelAbandonedOrders", "clear_leaderboards_contributors"]
    orders = app.schedules.get("CancelAbandonedOrders").spec
    assert (orders.task, orders.kind, orders.cron, orders.tz, orders.queue) == (
        "CancelAbandonedOrders",
        ScheduleKind.CRON,
        "*/5 * * * *",
        "UTC",
        "default",
    )
    board = app.schedules.get("clear_leaderboards_contributors").spec
    assert (board.task, board.cron, board.queue, board.description, board.origin) == (
        "ClearLeaderboards",
        "30 6 * * 1",
        "low",
        "Reset the weekly leaders",
        ScheduleOrigin.FILE,
    )
    assert json.loads(board.payload) == {"args": ["contributors"], "kwargs": {}}
    again = app.schedules.load(TALK, "talk.yml")
    assert sorted(again.unchanged) == ["CancelAbandonedOrders", "clear_leaderboards_contributors"]
    assert again.added == again.changed == []


def test_every_form_loads(app: App) -> None:
    report = app.schedules.load(FORMS, "forms.yml")
    assert len(report.added) == 5
    assert report.ignored == {
        "ruby_symbols": ["persist", "rails_env", "every option blocking"],
        "empty_args": ["custom_job_class"],
    }
    stockholm = app.schedules.get("stockholm_report").spec
    assert (stockholm.cron, stockholm.tz) == ("30 6 * * 1", "Europe/Stockholm")
    poll = app.schedules.get("poll_feeds")
    assert poll.spec.every == 30 and poll.next_tick == app.clock.now() + 120
    assert json.loads(poll.spec.payload)["args"] == [1, "two"]
    symbols = app.schedules.get("ruby_symbols")
    assert symbols.next_tick == app.clock.now() + 60
    assert json.loads(symbols.spec.payload)["kwargs"] == {"region": "eu", "limit": 10}
    seconds = app.schedules.get("seconds_cron").spec
    assert (seconds.cron, seconds.sla, seconds.tz) == ("*/15 * * * * *", 30.0, "America/New_York")
    assert json.loads(app.schedules.get("empty_args").spec.payload) == {"args": [], "kwargs": {}}


def test_bad_entries_are_all_reported_with_name_and_line_and_nothing_is_applied(app: App) -> None:
    text = (
        TALK
        + """\
bad_cron:
  cron: "61 * * * *"
bad_every:
  every: "soon"
unknown_task:
  every: 1h
  class: NoSuchTask
typo:
  crn: "* * * * *"
wrong_args:
  every: 1h
  class: ClearLeaderboards
"""
    )
    with pytest.raises(ScheduleFileError) as caught:
        app.schedules.load(text, "bad.yml")
    problems = caught.value.problems
    lines = text.splitlines()
    names = ["bad_cron", "bad_every", "unknown_task", "typo", "wrong_args"]  # in file order
    assert [p.split(":", 1)[0] for p in problems] == [f"{n} (line {lines.index(n + ':') + 1})" for n in names]
    text_of = " ".join(problems)
    assert "Bad minute" in text_of and "not a duration" in text_of and "unknown task 'NoSuchTask'" in text_of
    assert "unknown key(s) crn" in text_of and "missing a required argument: 'board'" in text_of
    assert app.schedules.list() == []  # the good entries were not applied either


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("just a string", "must be a mapping"),
        ("a: [unclosed", "not valid YAML"),
        ("a:\n  cron: '* * * * *'\na:\n  cron: '* * * * *'\n", "defined more than once"),
        ("a:\n  cron: '* * * * *'\n  every: 5m\n", "exactly one of cron: or every:"),
        ("a:\n  every: [5m, 1m]\n", "every must be a duration"),
        ("a:\n  every: 5m\n  tz: UTC\n", "tz: applies to cron schedules only"),
        ("a: 5\n", "must be a mapping with cron: or every:"),
    ],
)
def test_malformed_files(text: str, fragment: str) -> None:
    try:
        _, problems = parse(text, "x.yml")
    except ScheduleFileError as exc:
        problems = exc.problems
    assert any(fragment in p for p in problems), problems


def test_an_empty_file_loads_nothing() -> None:
    assert parse("", "empty.yml") == ([], [])
