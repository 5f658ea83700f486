"""How the demo looks: a live view (rich ``Live``) on a terminal, plain progress lines when
there is none (CI, a pipe, ``--json``), and the summary at the end (rich text, or JSON).

Pure rendering of ``figures.Snapshot``: nothing here reads the store. The live view and the
summary share one set of rows, so they always agree.

Internal module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from backbeat.clock import iso
from backbeat.demo.figures import Snapshot
from backbeat.demo.jobs import POLL_EVERY, POLL_SLA
from backbeat.shapes import STATES
from backbeat.types import EventState

WAITING = ("queued", "scheduled", "running")
BREACHED_SHOWN = 5


class Display(Protocol):
    def update(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...


class LiveView:
    """The live terminal view, redrawn in place."""

    def __init__(self, console: Console) -> None:
        self._live = Live(console=console, refresh_per_second=4, transient=True)  # the summary replaces it

    def update(self, snapshot: Snapshot) -> None:
        self._live.update(table(snapshot, title=f"backbeat demo: {progress(snapshot)}"))
        if not self._live.is_started:
            self._live.start()

    def close(self) -> None:
        self._live.stop()


class PlainLines:
    """One line every ``every`` seconds of the run, for logs."""

    def __init__(self, write: Callable[[str], None], every: float = 5.0) -> None:
        self.write = write
        self.every = every
        self._next = 0.0

    def update(self, snapshot: Snapshot) -> None:
        if snapshot.figures.elapsed >= self._next:
            self.write(line(snapshot))
            self._next = snapshot.figures.elapsed + self.every

    def close(self) -> None:
        return None


def progress(s: Snapshot) -> str:
    return f"{s.figures.elapsed:.0f} s of {s.run.duration:g} s"


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.2f} %"


def every(s: Snapshot) -> str:
    intervals = s.figures.intervals
    if intervals is None:
        return "none yet"
    low, high = intervals
    return f"every {low:g} s" if low == high else f"every {low:g}-{high:g} s"


def twitter_limit(s: Snapshot) -> str:
    u = s.upstreams
    if u.tightened_after is None:
        return f"limit {u.limit} per token"
    return f"limit {u.first_limit} -> {u.limit} per token (tightened at {u.tightened_after:.0f} s)"


def rows(s: Snapshot) -> list[tuple[str, str, str]]:
    """(part, what, figure): the talk's boxes, top to bottom."""
    f, r, u = s.figures, s.run, s.upstreams
    handled, pending, dead = (f.events.get(state, 0) for state in ("handled", "pending", "dead"))
    waiting = sum(f.polls.get(state, 0) for state in WAITING)
    return [
        ("main app", "account.linked emitted", f"{r.emitted} / {r.users}"),
        ("message queue", "events consumed", f"{handled} handled, {pending} pending, {dead} dead"),
        ("jobs app", "polling schedules", f"{f.schedules}, {f.polled} polled, {every(s)}, SLA {POLL_SLA:g} s"),
        (
            "",
            "jobs run",
            f"{f.polls.get('succeeded', 0)} polls + {f.handlers.get('succeeded', 0)} handlers succeeded, "
            f"{f.polls.get('dead', 0)} dead, {waiting} waiting",
        ),
        (
            "",
            "workers (most seen / desired)" if s.record else "workers (actual / desired)",
            f"{f.workers} / {r.workers}",
        ),
        ("SLA", "compliance", f"{percent(f.compliance)}, {f.in_breach} in breach now"),
        ("", "worst staleness now", f"{f.staleness:.1f} s"),
        ("rate limits", "waits (decision log)", str(f.waits)),
        ("", "fake Twitter", f"{twitter_limit(s)}: {u.requests} requests, {u.throttled} answered 429"),
        ("feed engine", "posts", f"{u.posts} to {u.feeds} feeds"),
    ]


def table(s: Snapshot, *, title: str) -> Table:
    out = Table(title=title, title_justify="left", show_header=False, caption=f"logs: {s.run.log}")
    out.add_column("part", style="bold")
    out.add_column("what")
    out.add_column("figure")
    for part, what, figure in rows(s):
        out.add_row(part, what, Text(figure))
    return out


def line(s: Snapshot) -> str:
    f = s.figures
    return (
        f"[{progress(s)}] linked {s.run.emitted}/{s.run.users}; events handled {f.events.get('handled', 0)}; "
        f"schedules {f.schedules} ({f.polled} polled, {every(s)}); polls ok {f.polls.get('succeeded', 0)}; "
        f"workers {f.workers}/{s.run.workers}; SLA {percent(f.compliance)} ({f.in_breach} in breach, "
        f"worst staleness {f.staleness:.1f} s); rate-limit waits {f.waits}; Twitter 429s {s.upstreams.throttled}"
    )


def verdict(s: Snapshot) -> list[str]:
    f, r, u, rec = s.figures, s.run, s.upstreams, s.record
    assert rec is not None
    out = []
    if f.polled < r.users:
        out.append(
            f"{r.users - f.polled} of {r.users} accounts were not polled yet when the run ended "
            "(each is polled once its account.linked event is handled; give --duration more time)."
        )
    elif not rec.breached:
        out.append(
            f"Every linked account was polled within its {POLL_SLA:g} s SLA: the longest any went without a "
            f"successful poll was {rec.worst_gap:.1f} s ({rec.worst_key})."
        )
    if rec.breached:
        out.append(
            f"{len(rec.breached)} of {f.schedules} schedules breached their {POLL_SLA:g} s SLA "
            f"({f.breach_seconds:.1f} s of breach in all); the worst:"
        )
        shown = rec.breached[:BREACHED_SHOWN]
        out += [f"  {b.key}: {b.seconds:.1f} s in breach, {b.waits} rate-limit waits" for b in shown]
        if len(rec.breached) > len(shown):
            out.append(f"  and {len(rec.breached) - len(shown)} more (backbeat sla lists them)")
    if u.tightened_after is not None and u.throttled:
        out.append(
            f"Twitter tightened its limit to {u.limit} per token at {u.tightened_after:.0f} s and answered "
            f"{u.throttled} requests with 429; each became a wait until its Retry-After, not a failure "
            f"({f.waits} rate-limit waits in the decision logs)."
        )
    elif u.tightened_after is not None:
        out.append(
            f"Twitter tightened its limit to {u.limit} per token at {u.tightened_after:.0f} s; no poll met it "
            f"before the end (each account's next poll comes {POLL_EVERY:g} s after its last one)."
        )
    if f.intervals is not None and f.intervals[1] > POLL_EVERY:
        out.append(
            f"The autopilot stretched the polls of throttled accounts from {POLL_EVERY:g} s to as much as "
            f"{f.intervals[1]:g} s, inside the SLA, so they stop asking Twitter too early "
            "(backbeat explain twitter:<id> shows each change and why)."
        )
    out.append(f"Workers: {r.workers} wanted at the end ({'the autopilot' if r.auto else '--workers'}).")
    return out


def summary(s: Snapshot) -> RenderableType:
    rec = s.record
    assert rec is not None
    ended = "interrupted" if s.interrupted else "ended"
    title = f"backbeat demo {ended} after {s.figures.elapsed:.1f} s ({s.run.users} users, {s.run.url})"
    figures = table(s, title=title)
    figures.add_row("SLA", "worst gap between polls", f"{rec.worst_gap:.1f} s ({rec.worst_key or '-'})")
    figures.add_row("", "breaches", f"{rec.breaches} ({len(rec.breached)} schedules)")
    url = s.run.url
    look = [
        f"backbeat sla --url {url}",
        f"backbeat explain {rec.breached[0].key if rec.breached else rec.worst_key or 'twitter:1'} --url {url}",
        f"backbeat events list --url {url}",
    ]
    return Group(
        figures,
        *(Text(text) for text in verdict(s)),
        Text("Look closer:", style="bold"),
        *(Text(f"  {command}") for command in look),
    )


def summary_json(s: Snapshot) -> dict[str, Any]:
    """The summary as ``backbeat demo --json`` prints it (timestamps ISO 8601 UTC)."""
    f, r, u, rec = s.figures, s.run, s.upstreams, s.record
    assert rec is not None
    return {
        "url": r.url,
        "users": r.users,
        "duration_seconds": r.duration,
        "interrupted": s.interrupted,
        "started_at": iso(f.since),
        "ended_at": iso(f.at),
        "events": {"emitted": r.emitted, **_states(f.events, [state.value for state in EventState])},
        "schedules": {
            "count": f.schedules,
            "polled": f.polled,
            "interval_seconds": None if f.intervals is None else {"min": f.intervals[0], "max": f.intervals[1]},
            "sla_seconds": POLL_SLA,
        },
        "jobs": {"polls": _states(f.polls, STATES), "handlers": _states(f.handlers, STATES)},
        "workers": {"most_seen": f.workers, "desired": r.workers},
        "sla": {
            "compliance": None if f.compliance is None else round(f.compliance, 6),
            "in_breach": f.in_breach,
            "breach_seconds": round(f.breach_seconds, 3),
            "breaches": rec.breaches,
            "worst_staleness_seconds": round(f.staleness, 3),
            "worst_gap_seconds": round(rec.worst_gap, 3),
            "worst_gap_key": rec.worst_key,
            "breached": [{"key": b.key, "seconds": round(b.seconds, 3), "waits": b.waits} for b in rec.breached],
        },
        "rate_limits": {
            "waits": f.waits,
            "twitter": {
                "requests": u.requests,
                "throttled": u.throttled,
                "first_limit": u.first_limit,
                "limit": u.limit,
                "tightened_after_seconds": None if u.tightened_after is None else round(u.tightened_after, 3),
            },
        },
        "feed": {"posts": u.posts, "feeds": u.feeds},
        "log": r.log,
    }


def _states(counts: Mapping[str, int], states: Sequence[str]) -> dict[str, int]:
    return {state: counts.get(state, 0) for state in states}
