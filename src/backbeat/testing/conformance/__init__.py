"""The store conformance suite: one set of tests every store runs, unchanged.

A store's test module subclasses ``StoreConformance`` and provides one fixture,
``store_url``, naming a fresh, empty store::

    class TestSQLite(StoreConformance):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"sqlite:///{tmp_path}/t.db"

Tests skip only on a declared ``Capability``, never on a store's name. Time is passed in
explicitly (``T0`` and offsets): no test reads the wall clock. One module per entity:
``jobs``, ``queues`` (with workers and wake-ups), ``schedules``, ``sla`` (and the decision
log), ``buckets`` (rate limits), ``events``, ``autopilot`` (what it reads and writes).
"""

from backbeat.testing.conformance.autopilot import AutopilotTests
from backbeat.testing.conformance.buckets import BucketTests
from backbeat.testing.conformance.events import EventTests
from backbeat.testing.conformance.helpers import T0, TASKS, claim, lease_of, new_job, outcome
from backbeat.testing.conformance.jobs import JobTests
from backbeat.testing.conformance.queues import QueueWorkerTests
from backbeat.testing.conformance.schedules import ScheduleTests
from backbeat.testing.conformance.sla import SlaTests

__all__ = ["TASKS", "T0", "StoreConformance", "claim", "lease_of", "new_job", "outcome"]


class StoreConformance(JobTests, QueueWorkerTests, ScheduleTests, SlaTests, BucketTests, EventTests, AutopilotTests):
    """The behaviour ``backbeat.store.base.Store`` specifies, as tests."""
