"""When a worker must have stopped a job whose lease it could not renew (runtime/leases.py)."""

from __future__ import annotations

import pytest

from backbeat.runtime.leases import Renewals


def test_the_deadline_is_half_a_heartbeat_before_the_lease_expires() -> None:
    renewals = Renewals(lease=30.0, heartbeat=10.0)
    renewals.renewed(["a"], 100.0)
    assert renewals.deadline("a") == 125.0  # two heartbeats (110, 120) must have failed
    assert renewals.overdue(["a"], 124.9) == []
    assert renewals.overdue(["a"], 125.0) == ["a"]
    renewals.renewed(["a"], 110.0)
    assert renewals.overdue(["a"], 125.0) == []


@pytest.mark.parametrize("heartbeat", [1.0, 10.0, 20.0, 29.0])
def test_a_healthy_heartbeat_always_renews_before_the_deadline(heartbeat: float) -> None:
    renewals = Renewals(lease=30.0, heartbeat=heartbeat)
    renewals.renewed(["a"], 0.0)
    assert heartbeat < renewals.deadline("a") < 30.0


def test_an_unknown_or_forgotten_lease_is_overdue() -> None:
    renewals = Renewals(lease=30.0, heartbeat=10.0)
    renewals.renewed(["a"], 0.0)
    renewals.forget("a")
    assert renewals.overdue(["a", "b"], 0.0) == ["a", "b"]
