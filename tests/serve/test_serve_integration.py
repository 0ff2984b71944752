"""End to end with real compiled artifacts: torch -> wasm -> KServe v2 over the ASGI app,
under concurrent load, with a real deadline hit (epoch interruption), real fuel exhaustion
and a killed worker. Every request must get an answer."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import numpy as np
import pytest
import torch

import wasm_torch
from wasm_torch.serve.app import create_app
from wasm_torch.serve.settings import ServeSettings
from wasm_torch.serve.sim.faults import FaultPlan, FaultyModel

pytestmark = pytest.mark.toolchain


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    small = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    wasm_torch.compile(small, (torch.randn(2, 4),), root / "mlp", dynamic_shapes=({0: batch},))
    # heavy enough that a batch of 512 takes far longer than a 10 ms deadline (~1 GFLOP)
    big = torch.nn.Sequential(torch.nn.Linear(256, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 256)).eval()
    rows = torch.export.Dim("batch", min=1, max=512)
    wasm_torch.compile(big, (torch.randn(2, 256),), root / "big", dynamic_shapes=({0: rows},))
    return root, small, big


def request(x: np.ndarray, name: str = "input") -> dict:
    tensor = {"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    return {"inputs": [tensor]}


async def fire(app, reqs: list[tuple[str, dict]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as c:
        return await asyncio.gather(*(c.post(path, json=body) for path, body in reqs))


def test_serves_a_directory_of_artifacts_and_matches_torch(artifacts):
    root, small, _ = artifacts
    app = create_app(root, ServeSettings(replicas=2, healing=False, max_batch_size=16))
    try:
        from fastapi.testclient import TestClient

        c = TestClient(app)
        meta = c.get("/v2/models/mlp").json()
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
        rng = np.random.default_rng(0)
        xs = [rng.standard_normal((1 + i % 4, 4)).astype(np.float32) for i in range(64)]
        responses = asyncio.run(fire(app, [("/v2/models/mlp/infer", request(x)) for x in xs]))
        assert [r.status_code for r in responses] == [200] * 64
        for x, r in zip(xs, responses, strict=True):
            out = r.json()["outputs"][0]
            want = small(torch.from_numpy(x)).detach().numpy()
            got = np.array(out["data"]).reshape(out["shape"])
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        text = c.get("/metrics").text
        assert 'wasm_torch_inference_requests_total{code="200",model="mlp",protocol="http"} 64.0' in text
    finally:
        app.state.server.registry.close()


def test_runaway_request_hits_its_deadline_and_the_rest_are_served(artifacts):
    root, _, _ = artifacts
    app = create_app(
        {"big": root / "big"}, ServeSettings(replicas=2, healing=False, deadline_s=0.01, max_batch_size=4)
    )
    try:
        rng = np.random.default_rng(1)
        runaway = ("/v2/models/big/infer", request(rng.standard_normal((512, 256)).astype(np.float32)))
        small = [
            ("/v2/models/big/infer", request(rng.standard_normal((1, 256)).astype(np.float32)))
            for _ in range(30)
        ]
        responses = asyncio.run(fire(app, [runaway, *small]))
        assert responses[0].status_code == 504 and "deadline" in responses[0].json()["error"]
        assert [r.status_code for r in responses[1:]] == [200] * 30
    finally:
        app.state.server.registry.close()


def test_fuel_budget_stops_an_oversized_request_deterministically(artifacts):
    root, _, _ = artifacts
    probe = wasm_torch.load(root / "mlp", fuel=10**12)
    probe.run({"input": np.ones((1, 4), np.float32)})
    one = probe.stats()["fuel_last"]
    budget = one * 8  # room for a few rows, never for 64
    app = create_app(
        {"mlp": root / "mlp"}, ServeSettings(replicas=1, healing=False, fuel=budget, max_batch_size=2)
    )
    try:
        big = request(np.ones((64, 4), np.float32))
        responses = asyncio.run(
            fire(
                app,
                [("/v2/models/mlp/infer", big)]
                + [("/v2/models/mlp/infer", request(np.ones((1, 4), np.float32)))] * 10,
            )
        )
        assert responses[0].status_code == 422 and "fuel" in responses[0].json()["error"]
        assert [r.status_code for r in responses[1:]] == [200] * 10
    finally:
        app.state.server.registry.close()


def test_killed_worker_under_load_loses_no_request(artifacts):
    root, _, _ = artifacts
    plan = FaultPlan()
    plan.add("kill", times=2)
    app = create_app(
        {"mlp": lambda: FaultyModel(wasm_torch.load(root / "mlp"), plan)},
        ServeSettings(replicas=2, healing=False, max_batch_size=8, max_retries=2),
    )
    try:
        rng = np.random.default_rng(2)
        reqs = [
            ("/v2/models/mlp/infer", request(rng.standard_normal((1, 4)).astype(np.float32)))
            for _ in range(80)
        ]
        responses = asyncio.run(fire(app, reqs))
        assert Counter(r.status_code for r in responses) == Counter({200: 80})
        assert [a for a, _ in plan.fired] == ["kill", "kill"]
        pool = app.state.server.registry.get("mlp")
        assert sum(r.restarts for r in pool.replicas) == 2
    finally:
        app.state.server.registry.close()
