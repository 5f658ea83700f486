"""The reference store: rate-limit buckets."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from backbeat.store.memory.state import (
    MemoryState,
)
from backbeat.types import (
    BucketRequest,
    BucketState,
    JobState,
)


class BucketMethods(MemoryState):
    # -- rate-limit buckets -----------------------------------------------------------

    async def bucket_acquire(self, requests: Sequence[BucketRequest], *, now: float) -> list[float | None]:
        with self._lock:
            return [self._acquire(request, now) for request in requests]

    def _acquire(self, r: BucketRequest, now: float) -> float | None:
        blocked = self._blocked.get(r.bucket)
        if blocked is not None and blocked > now:
            return blocked
        starts = self._starts.setdefault(r.bucket, deque())
        if r.limit is not None and r.per is not None:
            while starts and starts[0] <= now - r.per:
                starts.popleft()
            if len(starts) >= r.limit:
                return starts[0] + r.per
        if r.concurrency is not None and self._holding(r.bucket) >= r.concurrency:
            return now + 1.0
        if r.limit is not None:
            starts.append(now)
        self._holders[r.job_id] = r.bucket
        return None

    def _holding(self, bucket: str) -> int:
        return sum(
            1
            for job_id, held in self._holders.items()
            if held == bucket and (job := self._jobs.get(job_id)) is not None and job.state is JobState.RUNNING
        )

    async def bucket_block(self, bucket: str, *, until: float) -> None:
        with self._lock:
            self._blocked[bucket] = max(until, self._blocked.get(bucket, until))

    async def bucket_state(self, bucket: str, *, now: float, per: float | None) -> BucketState:
        with self._lock:
            starts = self._starts.get(bucket, deque())
            in_window = len(starts) if per is None else sum(1 for t in starts if t > now - per)
            return BucketState(
                bucket=bucket,
                blocked_until=self._blocked.get(bucket),
                starts=in_window,
                running=self._holding(bucket),
            )
