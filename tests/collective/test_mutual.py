"""Mutual models: peer beliefs move with what is observed, forget old behaviour, the self-model's
run time decides whether a lease is worth taking, and choosing by the models earns more than
round-robin in the seeded simulation."""

from __future__ import annotations

import random

import pytest

from wasm_torch.collective.errors import CollectiveError
from wasm_torch.collective.mutual import Chooser, MutualSim, PeerModel, SelfModel, mutual_sim


def test_peer_model_updates_and_forgets():
    m = PeerModel()
    for _ in range(30):
        m.observe_call(True, 20.0)
    assert m.availability > 0.9 and m.latency_ms == pytest.approx(20.0, abs=2.0)
    for _ in range(60):
        m.observe_call(False)
    assert m.availability < 0.3  # recent failures dominate: the counts decay
    for _ in range(10):
        m.observe_audit(False)
    assert m.honesty < 0.2
    m.observe_call(True, float("nan"))
    assert m.latency_ms == pytest.approx(20.0, abs=2.0)


def test_self_model_and_leases():
    me = SelfModel()
    assert me.on_time(5.0) == 1.0  # nothing known yet
    for _ in range(20):
        me.observe_run(4.0)
    assert me.run_s == pytest.approx(4.0, abs=0.1)
    assert me.on_time(30.0) == 1.0 and me.on_time(3.0) < 0.2


def test_chooser_prefers_the_better_peer():
    good, bad = PeerModel(), PeerModel()
    for _ in range(20):
        good.observe_call(True, 20.0)
        bad.observe_call(False)
        good.observe_audit(True)
        bad.observe_audit(False)
    models = {"g": good, "b": bad}
    for strategy in ("greedy", "thompson"):
        ch = Chooser(strategy=strategy, rng=random.Random(0))
        picks = [ch.choose(models, ["g", "b"]) for _ in range(200)]
        assert picks.count("g") > 180
    rr = Chooser(strategy="round-robin")
    assert [rr.choose(models, ["g", "b"]) for _ in range(4)] == ["b", "g", "b", "g"]
    with pytest.raises(CollectiveError):
        Chooser(strategy="oracle")
    with pytest.raises(CollectiveError):
        rr.choose(models, [])


def test_models_earn_more_than_round_robin():
    rr = mutual_sim(MutualSim(nodes=60, steps=200, strategy="round-robin", seed=3))
    gr = mutual_sim(MutualSim(nodes=60, steps=200, strategy="greedy", seed=3))
    assert gr["credit_per_node_hour"] > 1.3 * rr["credit_per_node_hour"]
    assert gr["wasted_share"] < rr["wasted_share"]
