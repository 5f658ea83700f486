"""``app.schedules.run_now``: one run outside the cadence, through the scheduler's atomic fire."""

from __future__ import annotations

import pytest

from backbeat import App, ManualClock
from backbeat.errors import InvalidTransition
from backbeat.ids import uuid7
from backbeat.testing import run_until_idle
from backbeat.types import DecisionKind, JobFilter, JobState


def app_with_poll() -> tuple[App, ManualClock]:
    clock = ManualClock()
    app = App(f"memory://{uuid7()}", clock=clock)

    @app.task(name="poll")
    def poll() -> None: ...

    return app, clock


def jobs_of(app: App, key: str) -> list[JobState]:
    async def read() -> list[JobState]:
        store = await app.client.astore()
        return [j.state for j in await store.job_list(JobFilter(schedule_key=key))]

    return app.client.sync(read)


def test_run_now_ends_a_breach_and_keeps_the_next_occurrence() -> None:
    app, clock = app_with_poll()
    app.cron("0 * * * *", "poll", key="hourly", sla=600)
    before = app.schedules.get("hourly")
    clock.advance(900)  # 15 minutes without a success: in breach
    record = app.schedules.run_now("hourly")
    assert record.in_flight is not None and record.next_at == before.next_at  # the cadence stays
    with pytest.raises(InvalidTransition, match="run in flight"):
        app.schedules.run_now("hourly")
    run_until_idle(app)
    after = app.schedules.get("hourly")
    assert after.last_success_at == clock.now() and after.deadline_at == clock.now() + 600
    assert after.next_at == before.next_at and after.in_flight is None
    assert jobs_of(app, "hourly") == [JobState.SUCCEEDED]

    async def decisions() -> list[DecisionKind]:
        return [d.kind for d in await (await app.client.astore()).decision_list("hourly")]

    assert app.client.sync(decisions) == [DecisionKind.RUN_NOW]
    app.close()


def test_run_now_re_arms_a_delay_schedule_from_its_end_and_refuses_while_paused() -> None:
    app, clock = app_with_poll()
    app.every(300, "poll", key="poll:1")
    app.schedules.run_now("poll:1")
    clock.advance(2)
    run_until_idle(app)
    assert app.schedules.get("poll:1").next_at == clock.now() + 300  # fixed delay from this run's end
    app.schedules.pause("poll:1")
    with pytest.raises(InvalidTransition, match="paused"):
        app.schedules.run_now("poll:1")
    app.close()
