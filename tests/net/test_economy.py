"""The economy's formulas against the numbers in the issue, and the pure quorum rule."""

from __future__ import annotations

import math

import pytest

from wasm_torch.net import economy as ec
from wasm_torch.net.errors import BadMessage
from wasm_torch.net.params import NetworkParams
from wasm_torch.net.quorum import decide


def test_contribution_multiplier_follows_the_formula_not_the_table():
    assert ec.contribution_multiplier(0) == 10.0
    assert ec.contribution_multiplier(1_000_000) == pytest.approx(1 + 9 / math.e)
    assert ec.contribution_multiplier(1e9) == pytest.approx(1.0)
    xs = [ec.contribution_multiplier(c) for c in (0, 1e3, 1e5, 1e6, 1e7)]
    assert xs == sorted(xs, reverse=True)
    with pytest.raises(ValueError):
        ec.contribution_multiplier(-1)


def test_rates_from_the_issue():
    assert ec.uptime_bonus(3600) == ec.MICRO // 10  # 0.1 credit per hour
    assert ec.uptime_bonus(36_000) == ec.MICRO
    assert ec.task_cost(5_000_000, 1000, priority=True) == 2 * ec.task_cost(5_000_000, 1000, priority=False)
    assert ec.storage_cost(1_000_000, 1) == ec.MICRO // 100  # 0.01 credit per MB per day
    assert ec.storage_cost(10_000_000, 7) == 7 * ec.MICRO // 10
    assert ec.cpu_hours(int(3.6e12)) == pytest.approx(1.0)


def test_credit_and_cost_are_whole_positive_micro_credits():
    assert ec.task_credit(1, 1, 1.0) == 1 and ec.task_cost(1, 1, False) == 1
    assert ec.task_credit(3_000_000, 1000, 2.5) == 7500
    assert ec.reservation([1_000_000, 2_000_000], 1000, False, 3, 10) == 1000 * 3 + 2000 * 3 + 10


def test_market_price_rises_with_demand_and_is_bounded():
    floor = 1000
    assert ec.market_price(0, 0, floor, 100) == floor
    assert ec.market_price(10, 1000, floor, 100) == floor  # idle network: the floor
    assert ec.market_price(10_000, 1000, floor, 100) == int(floor * math.sqrt(10))
    assert ec.market_price(10**12, 1, floor, 100) == 100 * floor
    prices = [ec.market_price(d, 1000, floor, 100) for d in (0, 2000, 8000, 32000)]
    assert prices == sorted(prices)


def test_reputation_drops_fast_and_recovers_slowly():
    r = ec.REPUTATION_START
    down = ec.reputation_after_fault(r, "wrong")
    assert down == r / 2
    def to_win_back(start: float) -> int:
        up, n = ec.reputation_after_fault(start, "wrong"), 0
        while up < start:
            up, n = ec.reputation_after_success(up), n + 1
        return n

    assert to_win_back(0.5) == 41 and to_win_back(0.9) == 170  # the figures in docs/network.md
    for offence in ec.PENALTY:
        assert 0 < ec.reputation_after_fault(0.8, offence) < 0.8


def test_spot_checks_fall_with_a_clean_record_but_never_stop():
    rates = [ec.spot_check_rate(s, 0.05, 20) for s in (0, 10, 20, 100, 10**9)]
    assert rates[0] == 1.0 and rates[2] == 0.5 and rates == sorted(rates, reverse=True)
    assert rates[-1] == 0.05


def test_slash_and_escrow():
    assert ec.slash_amount(10 * ec.MICRO, 0.5) == 5 * ec.MICRO
    assert ec.slash_amount(ec.MICRO, 0.5) == ec.MICRO  # less than a credit would remain: all of it
    assert ec.slash_amount(0, 0.5) == 0
    assert ec.escrow_from_earning(100, 0, 1000) == 50
    assert ec.escrow_from_earning(100, 990, 1000) == 10
    assert ec.escrow_from_earning(100, 1000, 1000) == 0


def test_parameters_validate_and_round_trip():
    p = NetworkParams()
    assert NetworkParams.from_json(p.to_json()) == p
    assert p.updated({"replication": 3, "lease_s": 2}).lease_s == 2.0
    for bad in ({"replication": 1}, {"max_replicas": 2}, {"spot_check_floor": 0}, {"slash_rate": 2},
                {"admission": "invite"}, {"lease_s": 0}, {"pinned_variant": "relaxed-simd"}, {"replication": "3"},
                {"adaptive_replication": 1}, {"nope": 1}):  # fmt: skip
        with pytest.raises(BadMessage):
            p.updated(bad)
    assert NetworkParams.parse_assignment("admission=staked") == ("admission", "staked")
    assert NetworkParams.parse_assignment("slash_rate=0.25") == ("slash_rate", 0.25)
    with pytest.raises(BadMessage):
        NetworkParams.parse_assignment("replication")


@pytest.mark.parametrize(
    "results,running,quorum,state,canonical,losers",
    [
        ([("a", "h1")], 1, 2, "wait", None, ()),
        ([("a", "h1"), ("b", "h1")], 0, 2, "canonical", "h1", ()),
        ([("a", "h1"), ("b", "h2")], 0, 2, "more", None, ()),
        ([("a", "h1"), ("b", "h2"), ("c", "h1")], 0, 2, "canonical", "h1", ("b",)),
        ([("a", "h1"), ("b", "h2"), ("c", "h3")], 0, 2, "more", None, ()),
        ([("a", "h1"), ("b", "h2"), ("c", "h3"), ("d", "h4"), ("e", "h5")], 0, 2, "inconclusive", None, ()),
        ([("a", "h1")], 0, 1, "canonical", "h1", ()),
        ([("a", "h1"), ("b", "h1")], 1, 2, "wait", None, ()),  # replication 3: wait for the third
        ([("a", "h1"), ("b", "h1"), ("c", "h2"), ("d", "h2")], 0, 2, "more", None, ()),  # a tie is no quorum
    ],
)
def test_quorum(results, running, quorum, state, canonical, losers):
    v = decide(results, running, quorum, max_replicas=5)
    assert v.state == state and v.canonical == canonical and v.losers == losers
