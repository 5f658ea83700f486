"""Every store against the reference store (``memory://``), on the same random operations:
jobs (``jobs.JobModel``) and schedules with their SLAs and buckets
(``schedules.ScheduleModel``). Two drivers run the same models:

* a hypothesis state machine: each step one operation, its random choices drawn by
  hypothesis, so a failure shrinks to a short sequence of named steps;
* long seeded runs (hundreds of steps), for states only many steps reach.

A new store is one entry in ``stores.FACTORIES``."""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from backbeat.store.memory import MemoryStore
from tests.model import jobs, schedules
from tests.model.stores import FACTORIES, STORES
from tests.model.twins import Twins

MODELS: dict[str, tuple[type[Twins], tuple[float, ...]]] = {
    "jobs": (jobs.JobModel, jobs.GAPS),
    "schedules": (schedules.ScheduleModel, schedules.GAPS),
}
MACHINE_SETTINGS = settings(
    max_examples=20,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Modest for CI (a few seconds per store and model); raise max_examples for a long hunt."""


class StoreMachine(RuleBasedStateMachine):
    """One model on the reference store and a fresh store under test, stepped by hypothesis."""

    model_type: ClassVar[type[Twins]]
    store_name: ClassVar[str]
    gaps: ClassVar[tuple[float, ...]]
    names: ClassVar[list[str]]

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.stack = AsyncExitStack()
        sut = self.runner.run(self.stack.enter_async_context(FACTORIES[self.store_name]()))
        self.model = self.model_type(rng=random.Random(0), mem=MemoryStore(), sut=sut)
        self.ops = {op.__name__: op for op in self.model.operations()}

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.names), label="operation")
        self.model.rng = data.draw(st.randoms(use_true_random=False), label="choices")
        self.runner.run(self.ops[name]())

    @rule(gap=st.data())
    def advance(self, gap: st.DataObject) -> None:
        self.model.now += gap.draw(st.sampled_from(self.gaps), label="seconds")

    @rule()
    def compare(self) -> None:
        self.runner.run(self.model.check())

    def teardown(self) -> None:
        try:
            self.runner.run(self.model.check())
        finally:
            try:
                self.runner.run(self.stack.aclose())
            finally:
                self.runner.close()


def machine(model: str, store_name: str) -> type[StoreMachine]:
    model_type, gaps = MODELS[model]
    probe = model_type(rng=random.Random(0), mem=MemoryStore(), sut=MemoryStore())
    names = [op.__name__ for op in probe.operations()]  # repeated by weight
    attrs = {"model_type": model_type, "store_name": store_name, "gaps": gaps, "names": names}
    return type(f"{model.title()}On{store_name.title()}", (StoreMachine,), attrs)


@pytest.mark.parametrize("store_name", STORES)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_state_machine(model: str, store_name: str) -> None:
    run_state_machine_as_test(machine(model, store_name), settings=MACHINE_SETTINGS)


async def _seeded(model: str, store_name: str, seed: int, rounds: int, every: int) -> Twins:
    model_type, gaps = MODELS[model]
    async with FACTORIES[store_name]() as sut:
        twins = model_type(rng=random.Random(seed), mem=MemoryStore(), sut=sut)
        await twins.drive(rounds=rounds, gaps=gaps, every=every)
        return twins


@pytest.mark.parametrize("store_name", STORES)
@pytest.mark.parametrize("seed", [1, 2])
async def test_jobs_answer_like_the_reference_store(store_name: str, seed: int) -> None:
    model = await _seeded("jobs", store_name, seed, rounds=300, every=50)
    assert isinstance(model, jobs.JobModel)
    assert len(model.ids) > 100  # the run did enqueue (and so claim, ack...) a fair amount


@pytest.mark.parametrize("store_name", STORES)
@pytest.mark.parametrize("seed", [1, 2])
async def test_schedules_answer_like_the_reference_store(store_name: str, seed: int) -> None:
    model = await _seeded("schedules", store_name, seed, rounds=400, every=40)
    assert isinstance(model, schedules.ScheduleModel)
    assert len(model.fired) >= 10  # the run did fire (and so end runs, breach...) a fair amount
