"""What the model tests share: the same calls on the reference store (``memory://``) and
on the store under test, and the differences the spec allows, normalised."""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from backbeat.errors import InvalidTransition
from backbeat.store.base import Store
from backbeat.types import JobRecord, JobState, Lease
from tests.model.stores import check

T0 = 1_800_000_000.0


@dataclass
class Twins:
    rng: random.Random
    mem: Store
    sut: Store
    """The store under test."""
    now: float = T0
    held: dict[str, tuple[Lease, Lease]] = field(default_factory=dict)
    """job id -> its lease on the reference store, and on the store under test (the tokens differ)."""

    def norm(self, job: JobRecord) -> JobRecord:
        """Lease tokens differ; a due ``scheduled`` job that a claim did not take may be
        promoted to ``queued`` by one store and not the other."""
        due = job.state in (JobState.SCHEDULED, JobState.QUEUED) and job.run_at <= self.now
        return replace(job, lease_token=None, state=JobState.QUEUED if due else job.state)

    def norm_or_error(self, answer: JobRecord | type) -> JobRecord | type:
        return answer if isinstance(answer, type) else self.norm(answer)

    async def both(self, call: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """The answers of both stores (an error as its type)."""
        out = []
        for store in (self.mem, self.sut):
            try:
                out.append(await getattr(store, call)(*args, **kwargs))
            except (LookupError, InvalidTransition) as exc:
                out.append(type(exc))
        return out[0], out[1]

    async def same(self, call: str, *args: Any, **kwargs: Any) -> Any:
        m, r = await self.both(call, *args, **kwargs)
        assert m == r, (call, m, r)
        return m

    async def rescue(self) -> None:
        """Expired leases (workers that died) go back: the same jobs on both stores."""
        m, r = await self.both("job_rescue", now=self.now)
        assert sorted(map(self.norm, m), key=lambda j: j.id) == sorted(map(self.norm, r), key=lambda j: j.id)
        for job in m:
            self.held.pop(job.id, None)

    async def compare_all(self) -> None:
        """Every listing and record both stores hold must be the same (each model says what)."""
        raise NotImplementedError

    def operations(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """The random operations, repeated by weight (each model says which)."""
        raise NotImplementedError

    async def drive(self, *, rounds: int, gaps: Sequence[float], every: int) -> None:
        """Random operations, time moving on by one of ``gaps`` about every third step;
        every ``every`` steps and at the end, all is compared and the store checked."""
        steps = self.operations()
        for i in range(rounds):
            if self.rng.random() < 0.3:
                self.now += self.rng.choice(gaps)
            await self.rng.choice(steps)()
            if i % every == every - 1:
                await self.check()
        await self.check()

    async def check(self) -> None:
        await self.compare_all()
        check(self.sut)
