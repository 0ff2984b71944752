"""The event bus and the tension subscribers doing their real work."""

from __future__ import annotations

import numpy as np
import pytest

from wasm_torch.analyze.btsp import TemporalScore, attribute
from wasm_torch.analyze.events import EventBus, PartitionChanged, TensionEvent, TuningBudgetRequest
from wasm_torch.analyze.incremental import PartitionSession, partition_id
from wasm_torch.analyze.partition import PartitionOptions
from wasm_torch.analyze.synthetic import transformer_like
from wasm_torch.analyze.tension import BoundaryBudget, PartitionCache, RepartitionOnTension

from .test_incremental import seq_graph


def test_bus_order_reentrancy_errors_and_unsubscribe():
    bus, seen = EventBus(), []

    class Ping:
        pass

    class Pong(Ping):
        pass

    def first(e):
        seen.append(("first", type(e).__name__))
        if type(e) is Ping:
            bus.publish(Pong())  # queued: delivered after Ping reached every subscriber

    def broken(e):
        raise RuntimeError("subscriber bug")

    off = bus.subscribe(Ping, first)
    bus.subscribe(Ping, broken)
    bus.subscribe(Ping, lambda e: seen.append(("third", type(e).__name__)))
    errors = bus.publish(Ping())
    assert seen == [("first", "Ping"), ("third", "Ping"), ("first", "Pong"), ("third", "Pong")]
    assert [e.error for e in errors] == ["RuntimeError: subscriber bug"] * 2  # Ping's and queued Pong's
    assert len(bus.errors) == 2
    off()
    seen.clear()
    bus.publish(Pong())
    assert seen == [("third", "Pong")]
    with pytest.raises(TypeError):
        bus.subscribe("Ping", first)
    with pytest.raises(TypeError):
        bus.subscribe(Ping, 3)


def test_repartition_when_tension_passes_the_threshold():
    bus = EventBus()
    s = PartitionSession(seq_graph(), np.ones(4), PartitionOptions(2, 0.5), bus=bus)
    changes, tensions = [], []
    bus.subscribe(PartitionChanged, changes.append)
    bus.subscribe(TensionEvent, tensions.append)
    rep = RepartitionOnTension(s, threshold=0.25)
    s.solve()
    deployed = partition_id(s.deployed, s.dag)
    s.update(bindings={"s": 32})  # 12800, 4096, 5120 bytes: a better cut exists but tension 0.23 < 0.25
    assert tensions[-1].tension == pytest.approx(5120 / 22144) and rep.repartitions == 0
    assert partition_id(s.deployed, s.dag) == deployed
    s.update(bindings={"s": 8})  # deployed cut 1280 of 4768 traffic bytes: 0.27 > 0.25
    ev = tensions[-1]
    assert ev.tension == pytest.approx(1280 / (4 * (8 + 800 + 64 + 320))) and ev.best_tension < ev.tension
    assert rep.repartitions == 1 and changes[-1].reason.startswith("tension 0.268")
    assert s.deployed.stages[0].keys == ("n0", "n1")
    assert ev.boundary_ops == ("n2", "n3")


def test_repartition_when_the_deployed_partition_breaks_balance():
    g, costs = transformer_like(12)
    bus = EventBus()
    s = PartitionSession(g, costs, PartitionOptions(4, 0.1), bus=bus)
    rep = RepartitionOnTension(s, threshold=1.0)  # tension alone never triggers it
    s.solve()
    before = s.deployed.boundaries
    new = costs.copy()
    new[:40] *= 3.0
    s.update(new)
    assert rep.repartitions == 1 and s.deployed.boundaries != before
    assert s.deployed is s.best


def test_partition_cache_fills_and_invalidates():
    g, costs = transformer_like(12)
    bus = EventBus()
    s = PartitionSession(g, costs, PartitionOptions(4, 0.1), bus=bus)
    cache = PartitionCache(threshold=0.5)
    detach = cache.attach(bus)
    s.solve()
    assert cache.get(s.fingerprint, s.options) is s.deployed
    s.update(costs * 1.01)  # still feasible, low tension: entry kept
    assert cache.get(s.fingerprint, s.options) is not None and cache.invalidations == 0
    new = costs.copy()
    new[:40] *= 3.0
    s.update(new)  # the deployed partition breaks balance: the cached one is stale
    assert cache.invalidations == 1 and cache.get(s.fingerprint, s.options) is None
    RepartitionOnTension(s, 1.0)
    s.update(new * 1.0001)  # now the repartition deploys the new one: cached again
    assert cache.get(s.fingerprint, s.options) is s.deployed
    detach()
    assert bus.subscribers(TensionEvent) == 1


def test_boundary_budget_requests_weighted_by_the_temporal_score():
    g, costs = transformer_like(4)
    bus = EventBus()
    s = PartitionSession(g, costs, PartitionOptions(2, 0.2), bus=bus)
    score = TemporalScore(s.dag.keys)
    got: list[TuningBudgetRequest] = []
    bus.subscribe(TuningBudgetRequest, got.append)

    class Tuner:
        def __init__(self):
            self.calls = []

        def request_budget(self, graph, ops, budget, reason):
            self.calls.append((graph, ops, budget))

    tuner = Tuner()
    BoundaryBudget(s, budget=32, score=score, sink=tuner)
    p = s.solve()
    ops = s.boundary_ops(p)
    assert got and set(got[0].ops) == set(ops) and sum(got[0].ops.values()) == pytest.approx(1.0)
    assert len(set(got[0].ops.values())) == 1  # no measurements yet: equal shares
    # the boundary after layer 1: its producer (res2) and the readers in the next stage (ln1, res1)
    assert ops == ("l1.res2", "l2.ln1", "l2.res1")
    times = attribute([2.0, 1.0], [p.stages[0].keys, p.stages[1].keys], dict(zip(s.dag.keys, costs, strict=True)))
    score.observe(times)
    s.deploy(p, "same")  # same partition: no event
    assert len(got) == 1
    s.update(costs * 1.0)
    BoundaryBudget(s, budget=8, threshold=0.0, score=score)  # strained at any tension: asks on every event
    s.publish_tension()
    req = got[-1]
    assert req.budget == 8 and req.reason.startswith("tension")
    w = score.scores()
    assert req.ops["l1.res2"] == pytest.approx(w["l1.res2"] / sum(w[k] for k in ops))
    assert tuner.calls and tuner.calls[0][2] == 32


def test_temporal_score_by_hand():
    ts = TemporalScore(["p", "q"], decay=0.5, plateau_ratio=1.25, rate=0.5, drift=0.1, smoothing=0.8)
    assert ts.observe({"p": 3.0, "q": 1.0}) is True  # the first run is a plateau: w = share
    np.testing.assert_allclose(ts.weights, [0.75, 0.25])
    assert ts.observe({"p": 1.0, "q": 1.0}) is False  # 2 <= 1.25 * 4: drift towards the share
    np.testing.assert_allclose(ts.weights, [0.725, 0.275])
    assert ts.baseline == pytest.approx(3.6)
    assert ts.observe({"p": 1.0, "q": 9.0}) is True  # 10 > 1.25 * 3.6: potentiate towards the trace
    trace = np.array([0.4375 + 0.1, 0.3125 + 0.9])
    np.testing.assert_allclose(ts.weights, 0.5 * np.array([0.725, 0.275]) + 0.5 * trace / trace.sum())
    assert ts.top(1)[0][0] == "p" and ts.plateaus == 2
    with pytest.raises(KeyError):
        ts.observe({"r": 1.0})
    with pytest.raises(ValueError):
        ts.observe({"p": -1.0})
    with pytest.raises(ValueError):
        TemporalScore(["p"], rate=2.0)


def test_attribute_spreads_stage_time_by_cost():
    got = attribute([3.0, 1.0], [("a", "b"), ("c",)], {"a": 1.0, "b": 2.0, "c": 0.0})
    assert got == pytest.approx({"a": 1.0, "b": 2.0, "c": 1.0})
    with pytest.raises(ValueError):
        attribute([1.0], [("a",), ("b",)], {"a": 1, "b": 1})
