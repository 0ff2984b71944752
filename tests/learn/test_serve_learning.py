"""`wasm-torch serve` with learning switched on: the real app (lifespan, metrics counter, a compiled
model) consolidates the pattern memory once traffic sleeps, and keeps answering meanwhile."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from wasm_torch.learn.compile_space import CompileSpace
from wasm_torch.learn.memory import SNAPSHOT, PatternMemory
from wasm_torch.learn.tuner import cost_model_path
from wasm_torch.serve.app import create_app
from wasm_torch.serve.clock import FakeClock
from wasm_torch.serve.settings import ServeSettings

from .patterns import synthetic_pattern

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


@pytest.fixture(scope="module")
def tiny(artifacts):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    return artifacts("learn_serve_tiny", model, (torch.randn(2, 4),)).path


def test_server_consolidates_when_idle_and_keeps_serving(tmp_path, tiny, rng):
    sp = CompileSpace()
    mem = PatternMemory(tmp_path / "mem")
    for i in range(20):
        cfg = sp.sample(rng)
        mem.post_query(synthetic_pattern(f"p{i % 4}", rng), cfg, 1e-3 * (2.0 if cfg["elementwise"] == "scalar" else 1.0),
                       1e-3, sp.id)
    clock = FakeClock(0.0)
    settings = ServeSettings(replicas=1, healing=False, learn_memory=tmp_path / "mem", learn_period_s=60.0)
    app = create_app({"m": tiny}, settings, clock=clock)
    with TestClient(app) as client:
        name = client.get("/v2/models/m").json()["inputs"][0]["name"]
        body = {"inputs": [{"name": name, "shape": [2, 4], "datatype": "FP32", "data": [0.5] * 8}]}
        assert client.post("/v2/models/m/infer", json=body).status_code == 200
        deadline = time.monotonic() + 90
        while not cost_model_path(tmp_path / "mem", sp).exists() and time.monotonic() < deadline:
            clock.advance(120.0)  # two quiet minutes per real 0.2 s: the controller falls asleep
            time.sleep(0.2)
        r = client.post("/v2/models/m/infer", json=body)
        assert r.status_code == 200 and np.asarray(r.json()["outputs"][0]["data"]).size == 6
    assert (tmp_path / "mem" / SNAPSHOT).exists()
    assert cost_model_path(tmp_path / "mem", sp).exists()


def test_learning_is_off_by_default(tmp_path, tiny):
    app = create_app({"m": tiny}, ServeSettings(replicas=1, healing=False), clock=FakeClock(0.0))
    with TestClient(app) as client:
        assert client.get("/v2/health/ready").status_code == 200
    assert not any(tmp_path.iterdir())
