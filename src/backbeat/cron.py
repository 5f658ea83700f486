"""Cron expressions, on cronsim: pure functions of (expression, time zone, instant).

Forms: 5 fields (``m h dom mon dow``), 6 fields with seconds first (``s m h dom mon
dow``), names (``JAN``, ``MON-FRI``), ranges, steps, lists, and the aliases ``@yearly``
``@annually`` ``@monthly`` ``@weekly`` ``@daily`` ``@midnight`` ``@hourly``.

Time zones and daylight saving time (cronsim follows Debian cron here): occurrences are
wall-clock times in the schedule's zone.
* A wall-clock time that happens twice (autumn: 02:30 exists in summer and in winter
  time) fires **once**, at its first instance. Expressions that fire every hour or more
  often fire in both instances of the repeated hour, as elapsed time does.
* A wall-clock time that does not exist (spring: 02:30 is skipped) fires **once**, at the
  next valid instant (03:00).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from backbeat.errors import ScheduleError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``), or ``ScheduleError``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory of the tz database ("America")
        raise ScheduleError(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin' or 'UTC')") from None


def normalise(expr: str) -> str:
    """The expression with aliases expanded and whitespace collapsed; ``ScheduleError`` if
    it is not a valid cron expression."""
    if not isinstance(expr, str) or not expr.strip():
        raise ScheduleError(f"a cron expression must be a non-empty string, got {expr!r}")
    text = " ".join(expr.split())
    text = ALIASES.get(text.lower(), text)
    if text.startswith("@"):
        raise ScheduleError(f"unknown cron alias {expr!r}; known: {', '.join(ALIASES)}")
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ScheduleError(f"cron expression {expr!r} is invalid: {exc}") from None
    return text


def split_zone(text: str) -> tuple[str, str | None]:
    """``"30 6 * * 1 Europe/Stockholm"`` -> (``"30 6 * * 1"``, ``"Europe/Stockholm"``): the
    resque-scheduler form, where a time zone name may follow the fields."""
    parts = text.split()
    if len(parts) in (6, 7) and (parts[-1] == "UTC" or "/" in parts[-1]):
        return " ".join(parts[:-1]), parts[-1]
    return text, None


def next_after(expr: str, tz: str, after: float) -> float:
    """The first occurrence strictly after ``after`` (epoch seconds)."""
    start = datetime.fromtimestamp(after, zone(tz))
    return next(CronSim(expr, start)).timestamp()


def latest(expr: str, tz: str, when: float, count: int = 1) -> list[float]:
    """The last ``count`` occurrences at or before ``when``, latest first."""
    # cronsim's reverse iteration is strictly before its start: start a millisecond later
    start = datetime.fromtimestamp(when + 0.001, zone(tz))
    it = CronSim(expr, start, reverse=True)
    return [next(it).timestamp() for _ in range(count)]


def count_between(expr: str, tz: str, start: float, end: float, cap: int) -> int:
    """How many occurrences fall in ``[start, end]``, counting at most ``cap``."""
    it = CronSim(expr, datetime.fromtimestamp(start - 0.001, zone(tz)))
    n = 0
    while n < cap and next(it).timestamp() <= end:
        n += 1
    return n
