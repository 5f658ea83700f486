"""``Job``: the handle ``enqueue`` returns (``job.id``, ``job.status()``, ``job.result()``)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from backbeat.errors import JobCancelled, JobFailed
from backbeat.serialization import decode_result
from backbeat.types import JobRecord, JobState

if TYPE_CHECKING:
    from backbeat.client import Client


class Job:
    """A handle on one job in the store. Cheap to create; every call reads the store."""

    __slots__ = ("_client", "created", "id")

    def __init__(self, client: Client, job_id: str, *, created: bool = True) -> None:
        self._client = client
        self.id = job_id
        self.created = created
        """False when ``enqueue`` found a live job holding the same ``dedup_key``: this is that job."""

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    async def ainfo(self) -> JobRecord:
        """Everything the store holds about the job (raises ``JobNotFound``)."""
        store = await self._client.astore()
        return await store.job_get(self.id)

    async def astatus(self) -> JobState:
        return (await self.ainfo()).state

    async def aresult(self, timeout: float | None = None) -> Any:
        """Wait for the job to finish and return its value.

        Raises ``JobFailed`` (dead, with the last error), ``JobCancelled``, or
        ``TimeoutError`` if it has not finished within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            record = await self.ainfo()
            if record.state is JobState.SUCCEEDED:
                return decode_result(record.result)
            if record.state is JobState.DEAD:
                raise JobFailed(self.id, record.error, record.traceback)
            if record.state is JobState.CANCELLED:
                raise JobCancelled(self.id)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {record.state} after {timeout} s")
            wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(wait)
            pause = min(pause * 1.5, 0.25)

    async def acancel(self) -> JobState:
        """Cancel the job: at once if it has not started, at its worker's next heartbeat if
        it runs (async tasks are cancelled; see the docs for sync tasks). Returns the state."""
        store = await self._client.astore()
        return (await store.job_cancel(self.id, now=self._client.clock.now())).state

    async def aretry(self) -> JobState:
        """Requeue a dead or cancelled job."""
        store = await self._client.astore()
        return (await store.job_retry(self.id, now=self._client.clock.now())).state

    def info(self) -> JobRecord:
        return self._client.sync(self.ainfo)

    def status(self) -> JobState:
        return self._client.sync(self.astatus)

    def result(self, timeout: float | None = None) -> Any:
        return self._client.sync(self.aresult, timeout)

    def cancel(self) -> JobState:
        return self._client.sync(self.acancel)

    def retry(self) -> JobState:
        return self._client.sync(self.aretry)
