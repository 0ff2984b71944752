"""Whose fault is it: a client's bad data never takes a replica offline (the trap-DoS scenario), a
killed worker's batch-mates are retried alone, and negative token ids are refused as torch refuses
them."""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import wait

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import wasm_torch
from wasm_torch.errors import DeadlineExceeded, IndexOutOfRange, InputError, TrapError
from wasm_torch.serve.app import create_app
from wasm_torch.serve.errors import ReplicaFailure, classify, client_fault, replica_fault, retryable
from wasm_torch.serve.settings import ServeSettings

from .conftest import VOCAB
from .fakes import FakeModel


class BadTokenModel(FakeModel):
    """Raises IndexOutOfRange (a TrapError AND an InputError, as the runtime does) on any row with
    a value >= 100, like an embedding fed an id past its vocabulary."""

    def run(self, inputs):
        if (inputs["x"] >= 100).any():
            raise IndexOutOfRange("m: input 'x' has an index out of range")
        return super().run(inputs)


def x(rows: int, seed: int = 0, value: float | None = None) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((rows, 4)).astype(np.float32)
    if value is not None:
        a[0, 0] = value
    return a


def test_client_faults_are_decided_first():
    oob = IndexOutOfRange("id 50 out of range")
    assert isinstance(oob, TrapError) and isinstance(oob, InputError)
    assert client_fault(oob) and not replica_fault(oob) and not retryable(oob)
    assert classify(oob) == (400, "index_out_of_range")
    assert replica_fault(TrapError("unreachable")) and not client_fault(TrapError("x"))
    assert client_fault(DeadlineExceeded("x")) and not replica_fault(DeadlineExceeded("x"))
    assert retryable(ReplicaFailure("died"))


def test_bad_tokens_never_charge_the_replica(make_pool):
    pool = make_pool(BadTokenModel, faulty=False, replicas=2, max_batch_size=8, max_queue_delay_s=0.01)
    fs = []
    for i in range(200):  # one bad request in every four, mixed into batches
        fs.append(pool.submit({"x": x(1, i, value=500.0 if i % 4 == 0 else None)}))
    wait(fs, timeout=30)
    for i, f in enumerate(fs):
        if i % 4 == 0:
            assert isinstance(f.exception(), IndexOutOfRange)
        else:
            assert f.exception() is None
            np.testing.assert_allclose(f.result()["y"], x(1, i) @ FakeModel.W + 1, rtol=1e-5)
    for r in pool.replicas:
        assert r.restarts == 0 and r.breaker.state.name == "CLOSED"
        assert all(ok for _, _, ok in r.recent)  # client faults count as healthy calls
    assert pool.ready


@pytest.mark.toolchain
def test_trap_dos_scenario_loses_no_valid_request(compiled):
    """The reported attack: bursts of 12 bad-token requests mixed into valid traffic, on a real
    compiled embedding model (a bad id traps `unreachable` in wt_check_index). Before the fix, 551 of
    1,000 valid requests got 503. Here: 300 valid, a burst every 0.3 s; every valid one must be 200
    with torch's answer, every bad one 400, no instance restarted, every breaker closed."""
    path, torch_model = compiled["tok"]
    s = ServeSettings(
        replicas=2, max_batch_size=8, max_queue_delay_s=0.002, healing=True, breaker_min_calls=3
    )
    app = create_app({"tok": path}, s)
    rng = np.random.default_rng(0)
    valid = [rng.integers(0, VOCAB, (1 + i % 3, 1 + i % 7)) for i in range(300)]

    def body(ids: np.ndarray) -> dict:
        return {
            "inputs": [
                {"name": "ids", "shape": list(ids.shape), "datatype": "INT64", "data": ids.ravel().tolist()}
            ]
        }

    async def run() -> tuple[list[httpx.Response], list[httpx.Response]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
            done = asyncio.Event()
            bad_answers: list[httpx.Response] = []

            async def attacker() -> None:
                k = 0
                while not done.is_set():  # ids past the vocabulary and negative ones, 12 at a time
                    burst = [np.array([[1, 2, VOCAB + k + j if j % 2 else -1 - j]]) for j in range(12)]
                    posts = (c.post("/v2/models/tok/infer", json=body(b)) for b in burst)
                    bad_answers.extend(await asyncio.gather(*posts))
                    k += 1
                    await asyncio.sleep(0.3)

            async def client(part: list[np.ndarray]) -> list[httpx.Response]:
                return [await c.post("/v2/models/tok/infer", json=body(ids)) for ids in part]

            attack = asyncio.create_task(attacker())
            answers = await asyncio.gather(*(client(valid[i::4]) for i in range(4)))
            done.set()
            await attack
            ordered: list[httpx.Response] = []
            for k in range(len(valid)):
                ordered.append(answers[k % 4][k // 4])
            return ordered, bad_answers

    with TestClient(app):  # runs the lifespan: the healer is on, as in a real server
        good, bad = asyncio.run(run())
        pool = app.state.server.registry.get("tok")
        metrics = app.state.server.metrics.render().decode()
    assert len(bad) >= 24, "the attacker must have sent at least two bursts"
    assert [r.status_code for r in good] == [200] * len(valid)
    for ids, r in zip(valid, good, strict=True):
        want = torch_model(torch.from_numpy(ids)).detach().numpy()
        got = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert {r.status_code for r in bad} == {400}
    assert all(re.search("out of range|valid indices", r.json()["error"]) for r in bad), bad[0].text
    assert all(r.restarts == 0 and r.breaker.state.name == "CLOSED" for r in pool.replicas)
    assert "wasm_torch_instance_restarts_total{" not in metrics
    assert re.search(
        r'wasm_torch_inference_errors_total\{kind="index_out_of_range",model="tok"\} (\d+)', metrics
    )


def test_killed_workers_batch_mates_are_retried_alone(make_pool, plan):
    """A request that kills its worker (here: any batch holding 666) must not take the innocent
    requests batched with it down again: they are retried alone and all succeed."""
    retries = 2
    pool = make_pool(replicas=1, max_batch_size=16, max_queue_delay_s=0.05, max_retries=retries)
    plan.add("kill", when=lambda d: bool((d["x"] == 666).any()), times=None)
    gate = threading.Barrier(2)
    fs = []

    def submit_all() -> None:
        gate.wait()
        for i in range(12):
            fs.append(pool.submit({"x": x(1, i, value=666.0 if i == 5 else None)}))

    t = threading.Thread(target=submit_all)
    t.start()
    gate.wait()
    t.join()
    wait(fs, timeout=30)
    errors = [f.exception() for f in fs]
    assert isinstance(errors[5], ReplicaFailure)
    assert [e for i, e in enumerate(errors) if i != 5] == [None] * 11
    assert pool.replicas[0].restarts == 1 + retries  # the poison killed its batch's worker, then two solo
    assert plan.fired.count(("kill", 0)) == 1 + retries


@pytest.mark.toolchain
def test_negative_ids_are_refused_as_torch_refuses_them(artifacts):
    """Token id -1 used to wrap to the last embedding row and return 200. wt_check_index now traps on
    any id outside [0, n): the same as torch for embedding, index_select and gather (IndexError /
    RuntimeError there); stricter than torch for `x[t]`, which wraps negatives in torch."""

    class Lookups(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.table = torch.nn.Parameter(torch.randn(10, 4))

        def forward(self, ids, sel, g):
            a = self.emb(ids).sum()
            b = self.table.index_select(0, sel).sum()
            c = torch.gather(self.table, 0, g).sum()
            return (a + b + c).reshape(1)

    torch.manual_seed(0)
    model = Lookups().eval()
    ok = (torch.tensor([1, 9]), torch.tensor([0, 9]), torch.tensor([[0, 1, 2, 9]]))
    m = wasm_torch.load(artifacts("serve_lookups", model, ok).path)
    np.testing.assert_allclose(m(*[t.numpy() for t in ok]), model(*ok).detach().numpy(), rtol=1e-5)
    for k in range(3):  # -1 in each kind of index input in turn
        bad = [t.clone() for t in ok]
        bad[k].view(-1)[0] = -1
        with pytest.raises((IndexError, RuntimeError)):
            model(*bad)
        with pytest.raises(IndexOutOfRange, match="-1"):
            m(*[t.numpy() for t in bad])
    np.testing.assert_allclose(m(*[t.numpy() for t in ok]), model(*ok).detach().numpy(), rtol=1e-5)

    class Subscript(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = torch.nn.Parameter(torch.randn(10, 4))

        def forward(self, t):
            return self.table[t]

    sub = Subscript().eval()
    s = wasm_torch.load(artifacts("serve_subscript", sub, (torch.tensor([1, 2]),)).path)
    assert torch.equal(sub(torch.tensor([-1, 0])), sub(torch.tensor([9, 0])))  # torch wraps x[t] ...
    with pytest.raises(IndexOutOfRange):  # ... we refuse it (documented in docs/serving.md)
        s(np.array([-1, 0]))
    np.testing.assert_allclose(s(np.array([9, 0])), sub(torch.tensor([9, 0])).detach().numpy(), rtol=1e-6)


@pytest.mark.toolchain
def test_negative_id_over_http_is_400(compiled):
    path, torch_model = compiled["tok"]
    with TestClient(create_app({"tok": path}, ServeSettings(replicas=1, healing=False))) as c:
        r = c.post(
            "/v2/models/tok/infer",
            json={"inputs": [{"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, -1]}]},
        )
        assert r.status_code == 400 and "-1" in r.json()["error"], r.text
        assert re.search("out of range|valid indices", r.json()["error"])
        with pytest.raises(IndexError):
            torch_model(torch.tensor([[1, 2, -1]]))
        ids = [1, 2, VOCAB - 1]
        r = c.post(
            "/v2/models/tok/infer",
            json={"inputs": [{"name": "ids", "shape": [1, 3], "datatype": "INT64", "data": ids}]},
        )
        assert r.status_code == 200
        want = torch_model(torch.tensor([ids])).detach().numpy()
        np.testing.assert_allclose(
            np.reshape(r.json()["outputs"][0]["data"], want.shape), want, rtol=1e-4, atol=1e-5
        )
