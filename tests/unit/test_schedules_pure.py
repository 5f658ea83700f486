"""Pure scheduling logic: durations, cron (with DST in a real zone), misfire planning."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from backbeat import cron
from backbeat.errors import ScheduleError
from backbeat.schedules import parse_duration, plan_fire
from backbeat.types import Misfire, ScheduleKind, ScheduleMode, ScheduleRecord, ScheduleSpec

BERLIN = ZoneInfo("Europe/Berlin")
T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (2.5, 2.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("90", 90.0),
        (" 10 s ", 10.0),
        ("500ms", 0.5),
        (timedelta(minutes=2), 120.0),
        ("1w", 604800.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "-3s", "", "1h x", None, True, [], float("nan"), -1])
def test_bad_durations_are_named(value: object) -> None:
    with pytest.raises(ScheduleError, match="interval"):
        parse_duration(value, "interval")


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("61 * * * *", "Bad minute"),
        ("* * *", "Wrong number of fields"),
        ("@reboot", "unknown cron alias"),
        ("", "non-empty"),
        ("0 0 31 2 *", "Bad day-of-month"),
    ],
)
def test_bad_cron_is_refused_with_the_reason(expr: str, fragment: str) -> None:
    with pytest.raises(ScheduleError, match=fragment):
        cron.normalise(expr)


def test_cron_forms() -> None:
    assert cron.normalise("@hourly") == "0 * * * *"
    assert cron.normalise(" */5  *  * * * ") == "*/5 * * * *"
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC).timestamp()  # a Monday
    assert cron.next_after(cron.normalise("0 9 * JAN-MAR MON-FRI"), "UTC", start) == start + 3600
    assert cron.next_after("*/15 * * * * *", "UTC", start) == start + 15  # six fields: seconds first
    assert cron.split_zone("30 6 * * 1 Europe/Stockholm") == ("30 6 * * 1", "Europe/Stockholm")
    assert cron.split_zone("30 6 * * 1") == ("30 6 * * 1", None)
    with pytest.raises(ScheduleError, match="unknown time zone"):
        cron.zone("Mars/Olympus")


def local_fires(expr: str, start: datetime, end: datetime) -> list[str]:
    out, t = [], start.timestamp() - 1
    while (t := cron.next_after(expr, "Europe/Berlin", t)) < end.timestamp():
        out.append(datetime.fromtimestamp(t, BERLIN).strftime("%m-%d %H:%M %Z"))
    return out


def test_dst_spring_forward_fires_a_missing_time_once_at_the_next_valid_instant() -> None:
    # Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist
    fires = local_fires("30 2 * * *", datetime(2026, 3, 28, 12, tzinfo=BERLIN), datetime(2026, 3, 31, tzinfo=BERLIN))
    assert fires == ["03-29 03:00 CEST", "03-30 02:30 CEST"]
    hourly = local_fires("0 * * * *", datetime(2026, 3, 29, tzinfo=BERLIN), datetime(2026, 3, 30, tzinfo=BERLIN))
    assert len(hourly) == 23 and "03-29 02:00 CET" not in hourly  # a 23-hour day


def test_dst_fall_back_fires_a_repeated_time_once() -> None:
    # Europe/Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice
    fires = local_fires("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=BERLIN), datetime(2026, 10, 27, tzinfo=BERLIN))
    assert fires == ["10-25 02:30 CEST", "10-26 02:30 CET"]
    hourly = local_fires("0 * * * *", datetime(2026, 10, 25, tzinfo=BERLIN), datetime(2026, 10, 26, tzinfo=BERLIN))
    assert len(hourly) == 25 and hourly.count("10-25 02:00 CEST") == hourly.count("10-25 02:00 CET") == 1


def record(**spec_changes: object) -> ScheduleRecord:
    fields: dict[str, object] = {
        "key": "k",
        "task": "t",
        "queue": "default",
        "payload": "{}",
        "kind": ScheduleKind.EVERY,
        "every": 10.0,
        "mode": ScheduleMode.RATE,
    }
    fields.update(spec_changes)
    spec = ScheduleSpec(**fields)  # type: ignore[arg-type]
    return ScheduleRecord(spec=spec, created_at=T0, updated_at=T0, next_tick=T0, next_at=T0)


def test_on_time_rate_fire_keeps_the_cadence() -> None:
    fire = plan_fire(record(), T0 + 0.3, random.Random(1))
    assert (fire.job.fire_at, fire.next_tick, fire.next_at, fire.skipped) == (T0, T0 + 10, T0 + 10, 0)
    assert fire.job.schedule_key == "k" and fire.job.run_at == T0 + 0.3 and fire.expected_next_at == T0


def test_skip_fires_the_latest_missed_occurrence_then_continues() -> None:
    fire = plan_fire(record(), T0 + 3600 + 4, random.Random(1))  # an hour of downtime
    assert (fire.job.fire_at, fire.next_tick, fire.skipped) == (T0 + 3600, T0 + 3610, 360)


def test_catch_up_fires_the_latest_missed_ones_one_by_one() -> None:
    rec = record(misfire=Misfire.CATCH_UP, catch_up_limit=3)
    fire = plan_fire(rec, T0 + 3600 + 4, random.Random(1))
    assert (fire.job.fire_at, fire.next_tick, fire.skipped) == (T0 + 3580, T0 + 3590, 358)
    assert fire.next_tick is not None and fire.next_tick < T0 + 3604  # due again when this run ends


def test_delay_mode_waits_for_the_run_to_end() -> None:
    fire = plan_fire(record(mode=ScheduleMode.DELAY, jitter=2.0), T0 + 500, random.Random(1))
    assert (fire.job.fire_at, fire.next_tick, fire.next_at) == (T0, None, None)
    assert 0 <= fire.pending_jitter <= 2.0


def test_cron_misfire_skip() -> None:
    rec = record(kind=ScheduleKind.CRON, every=None, cron="*/5 * * * *")
    start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    rec = ScheduleRecord(spec=rec.spec, created_at=start, updated_at=start, next_tick=start, next_at=start)
    fire = plan_fire(rec, start + 3600 + 30, random.Random(1))
    assert (fire.job.fire_at, fire.next_tick, fire.skipped) == (start + 3600, start + 3900, 12)


def test_jitter_delays_within_bounds() -> None:
    rng = random.Random(3)
    for _ in range(50):
        fire = plan_fire(record(jitter=4.0), T0, rng)
        assert fire.next_tick == T0 + 10 and fire.next_at is not None and T0 + 10 <= fire.next_at <= T0 + 14
