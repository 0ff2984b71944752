"""Kuramoto: the simulated order parameter against the exact Lorentzian theory around K_c, and the
repulsive all-harmonic coupling the coordinator uses to spread heartbeats (PhaseBoard)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wasm_torch.collective.errors import CollectiveError
from wasm_torch.collective.kuramoto import (
    HeartbeatSim,
    PhaseBoard,
    critical_coupling_gaussian,
    critical_coupling_lorentzian,
    harmonic_force,
    heartbeat_sim,
    lorentzian_frequencies,
    lorentzian_order,
    order_parameter,
    simulate,
    spread_force,
)

GAMMA = 0.5


def test_critical_couplings():
    assert critical_coupling_lorentzian(GAMMA) == 1.0
    sigma = 0.7
    g0 = 1 / (sigma * math.sqrt(2 * math.pi))
    assert critical_coupling_gaussian(sigma) == pytest.approx(2 / (math.pi * g0))
    assert critical_coupling_gaussian(1.0) == pytest.approx(math.sqrt(8 / math.pi))
    assert lorentzian_order(0.9, GAMMA) == 0.0 and lorentzian_order(4.0, GAMMA) == pytest.approx(math.sqrt(0.75))


@pytest.mark.parametrize("factor", [1.5, 2.0, 3.0])
def test_order_parameter_matches_theory_above_kc(factor):
    kc = critical_coupling_lorentzian(GAMMA)
    om = lorentzian_frequencies(800, GAMMA)
    got = simulate(om, factor * kc, t_end=120, dt=0.1, seed=1)["r_mean"]
    assert got == pytest.approx(lorentzian_order(factor * kc, GAMMA), abs=0.04)


def test_below_kc_stays_incoherent():
    om = lorentzian_frequencies(800, GAMMA)
    got = simulate(om, 0.5 * critical_coupling_lorentzian(GAMMA), t_end=120, dt=0.1, seed=1)["r_mean"]
    assert got < 0.12  # finite-N fluctuations only (~1/sqrt(N) = 0.035)


def test_spread_force_is_the_closed_form_of_all_harmonics():
    rng = np.random.default_rng(0)
    others = np.sort(rng.uniform(0, 2 * np.pi, 40))
    for theta in rng.uniform(0, 2 * np.pi, 10):
        exact = spread_force(list(others), float(others.sum()), float(theta))
        d = np.mod(others - theta, 2 * np.pi)
        assert exact == pytest.approx(-np.mean(np.pi - d) / 2)
        assert harmonic_force(others, float(theta), 4000) == pytest.approx(exact, abs=2e-3)


def test_splay_is_an_equilibrium_and_displacement_is_restored():
    n = 12
    splay = [2 * np.pi * k / n for k in range(n)]
    others = splay[1:]
    assert spread_force(others, sum(others), splay[0]) == pytest.approx(0.0, abs=1e-12)
    assert spread_force(others, sum(others), 0.1) < 0 < spread_force(others, sum(others), 2 * np.pi - 0.1)


def test_first_harmonic_alone_leaves_antipodal_clusters_stuck():
    """r1 = 0 for two opposite clusters: first-harmonic repulsion sees no force, the sawtooth does."""
    cluster = np.array([0.0] * 10 + [np.pi] * 10)
    assert order_parameter(cluster) < 1e-12
    others = cluster[1:]
    assert abs(harmonic_force(others, 0.0, 1)) < 1e-12
    assert abs(spread_force(sorted(others), float(others.sum()), 0.0)) > 0.5


def test_phase_board_bookkeeping():
    b = PhaseBoard(10.0, coupling=1.0)
    a0 = b.observe("a", 100.0)
    assert a0.shift_s == 0.0 and a0.nodes == 1  # the first heartbeat only takes a place
    b.observe("b", 100.1)
    again = b.observe("a", 110.0)
    assert again.nodes == 2 and -2.5 <= again.shift_s <= 2.5 and again.shift_s != 0
    assert b.observe("c", 200.0).nodes == 1  # a and b expired after two periods of silence
    with pytest.raises(CollectiveError):
        PhaseBoard(0.0)
    with pytest.raises(CollectiveError):
        PhaseBoard(10.0, coupling=3.0)


def test_board_recomputes_its_running_sums():
    b = PhaseBoard(1.0, coupling=1.0)
    rng = np.random.default_rng(3)
    t = 0.0
    for _ in range(10_000):
        t += rng.uniform(0, 0.001)
        b.observe(int(rng.integers(50)), t)
    assert b._sum == pytest.approx(math.fsum(b._sorted), abs=1e-6)
    assert b.order() == pytest.approx(order_parameter(np.asarray(b._sorted)), abs=1e-9)


def test_heartbeats_spread_better_than_jitter_at_scale():
    common = dict(nodes=1000, periods=25, measure_periods=5, seed=0)
    spread = heartbeat_sim(HeartbeatSim(strategy="kuramoto", start="herd", **common))
    jitter = heartbeat_sim(HeartbeatSim(strategy="jitter", start="random", **common))
    fixed = heartbeat_sim(HeartbeatSim(strategy="fixed", start="herd", **common))
    assert spread["peak_to_mean"] < 0.8 * jitter["peak_to_mean"]
    assert fixed["peak_to_mean"] > 5  # a restart storm with no correction stays a storm
    assert spread["order_r1"] < 0.05
    with pytest.raises(CollectiveError):
        heartbeat_sim(HeartbeatSim(strategy="nope"))
