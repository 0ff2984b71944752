from __future__ import annotations

import pytest

import wasm_torch.serve.ray.env  # noqa: F401  (before test_ray imports ray: see serve/ray/env.py)
from wasm_torch.serve.pool import ModelPool
from wasm_torch.serve.settings import ServeSettings
from wasm_torch.serve.sim.faults import FaultPlan, FaultyModel

from .fakes import FakeModel


@pytest.fixture
def plan() -> FaultPlan:
    return FaultPlan()


@pytest.fixture
def make_pool(plan):
    pools: list[ModelPool] = []

    def make(factory=FakeModel, faulty: bool = True, **settings) -> ModelPool:
        s = ServeSettings(**{"replicas": 2, "max_queue_delay_s": 0.005, "healing": False, **settings})
        f = (lambda: FaultyModel(factory(), plan)) if faulty else factory
        pool = ModelPool("m", f, s)
        pools.append(pool)
        return pool

    yield make
    for p in pools:
        p.close()
