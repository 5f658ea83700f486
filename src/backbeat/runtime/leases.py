"""When the leases a worker holds were last renewed, and so when each surely expires.

Invariant: a lease renewed by a store call made at ``now`` (the worker's clock, passed to
``job_claim`` or ``job_heartbeat``) expires at ``now + lease`` in the store, whenever the
reply arrives. So a worker that cannot reach the store (a stalled or dropped connection,
a partition) knows, by its own clock, when another worker may rescue its jobs: it stops
each attempt ``margin`` seconds before then (``Interrupt.LOST``), and never starts a job
whose claim answered too late. Without this a cut-off worker kept running jobs that a
rescuer was already running again (found by ``tests/faults/test_proxy.py``).

Internal module.
"""

from __future__ import annotations

from collections.abc import Iterable


class Renewals:
    def __init__(self, lease: float, heartbeat: float) -> None:
        self.lease = lease
        self.margin = min(heartbeat, lease - heartbeat) / 2
        """Seconds before the store's expiry that an attempt is stopped: half a heartbeat
        (at the default heartbeat of a third of the lease, two heartbeats in a row must fail
        first), less if the heartbeat is so long that the deadline would come before the
        next heartbeat could renew it (the deadline is always half-way between)."""
        self._at: dict[str, float] = {}

    def renewed(self, job_ids: Iterable[str], now: float) -> None:
        """The store renewed these leases by a call made at ``now``."""
        for job_id in job_ids:
            self._at[job_id] = now

    def forget(self, job_id: str) -> None:
        self._at.pop(job_id, None)

    def deadline(self, job_id: str) -> float:
        """When this worker must have stopped the job (its lease expires ``margin`` later)."""
        at = self._at.get(job_id)
        return float("-inf") if at is None else at + self.lease - self.margin

    def overdue(self, job_ids: Iterable[str], now: float) -> list[str]:
        """Those of ``job_ids`` whose deadline has passed."""
        return [job_id for job_id in job_ids if now >= self.deadline(job_id)]
