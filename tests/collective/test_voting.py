"""Stake voting: softmax over stakes (temperature) against proportional, the tally's quorum,
threshold and void double votes, the Sybil trade-off and the Nakamoto coefficient."""

from __future__ import annotations

import math

import pytest

from wasm_torch.collective.errors import CollectiveError
from wasm_torch.collective.voting import nakamoto, sybil_gain, tally, weights

STAKES = {"a": 100.0, "b": 20.0, "c": 10.0, "d": 10.0}


def test_weights():
    w = weights(STAKES, "proportional")
    assert w["a"] == pytest.approx(100 / 140) and sum(w.values()) == pytest.approx(1)
    s = weights(STAKES, "softmax", 50.0)
    z = sum(math.exp(x / 50) for x in STAKES.values())
    assert s["a"] == pytest.approx(math.exp(2) / z) and sum(s.values()) == pytest.approx(1)
    flat = weights(STAKES, "softmax", 1e9)
    assert all(v == pytest.approx(0.25) for v in flat.values())  # τ → ∞: one member, one vote
    sharp = weights(STAKES, "softmax", 1.0)
    assert sharp["a"] == pytest.approx(1.0)  # τ → 0: the largest stake decides
    assert weights({"x": 0.0}, "softmax", 1.0) == {}
    assert weights({"x": 1e6, "y": 1.0}, "softmax", 1e-3)["x"] == 1.0  # no overflow
    for bad in ({"x": -1.0}, {"x": float("inf")}):
        with pytest.raises(CollectiveError):
            weights(bad)
    with pytest.raises(CollectiveError):
        weights(STAKES, "softmax", 0.0)
    with pytest.raises(CollectiveError):
        weights(STAKES, "majority")


def test_tally_quorum_threshold_and_void():
    w = weights(STAKES, "proportional")
    t = tally(STAKES, {"a": {True}, "b": {False}}, "proportional", quorum=0.5)
    assert t.accepted and t.turnout == pytest.approx(w["a"] + w["b"])
    t = tally(STAKES, {"c": {True}}, "proportional", quorum=0.5)
    assert not t.accepted and "quorum" in t.reason
    t = tally(STAKES, {"a": {True, False}, "b": {True}, "c": {False}, "d": {False}}, "proportional", quorum=0.1)
    assert t.void == 1 and t.voters == 3 and not t.accepted  # a's double vote counts for neither side
    t = tally(STAKES, {"zz": {True}}, "proportional", quorum=0.0)  # outside the electorate: weight 0
    assert t.voters == 0 and not t.accepted
    assert not tally({}, {"a": {True}}).accepted
    with pytest.raises(CollectiveError):
        tally(STAKES, {}, quorum=1.5)


def test_sybil_gain_matches_the_formula_and_proportional_is_neutral():
    others = {f"m{i}": 10.0 for i in range(200)}
    assert sybil_gain(40.0, 4, others, "proportional", 1.0) == pytest.approx(1.0)
    tau = 30.0
    for k in (2, 3, 5):
        approx = k * math.exp(-(k - 1) * 40.0 / (k * tau))
        assert sybil_gain(40.0, k, others, "softmax", tau) == pytest.approx(approx, rel=0.05)
    floor = 10.0
    assert all(sybil_gain(k * floor, k, others, "softmax", floor / math.log(2)) <= 1.0 + 1e-9 for k in (2, 3, 4, 8))
    assert sybil_gain(2 * floor, 2, others, "softmax", 3 * floor) > 1.0


def test_nakamoto():
    assert nakamoto({"a": 0.6, "b": 0.4}) == 1
    assert nakamoto({k: 1.0 for k in "abcd"}) == 3
    assert nakamoto(weights(STAKES, "proportional")) == 1 and nakamoto(weights(STAKES, "softmax", 1e9)) == 2
