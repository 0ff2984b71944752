"""Differential privacy of shared pattern summaries: the accountant refuses to exceed the budget
(and composes disjoint releases in parallel), the release recovers the truth without noise, the
noise has the calibrated scale, and an empirical check of the ε bound on neighbouring datasets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from wasm_torch.collective.errors import CollectiveError, PrivacyBudgetExceeded
from wasm_torch.collective.privacy import (
    EPSILON,
    GAIN_CLIP,
    SYNC_MAX_S,
    SYNC_MIN_S,
    Accountant,
    Record,
    check_interval,
    release,
)

CANDS = [json.dumps({"k": i}) for i in range(5)]


def recs(n: int, cell: int = 0, best: int = 2, tag: str = "r") -> list[Record]:
    out = []
    for i in range(n):
        for j, c in enumerate(CANDS):
            out.append(Record(f"{tag}{i}-{j}", cell, c, math.log(2.0 if j == best else 0.9)))
    return out


def test_accountant_refuses_beyond_the_budget():
    acc = Accountant()
    assert acc.budget == EPSILON == 0.1
    rs = recs(3)
    release(rs, CANDS, 2, acc, 0.1, np.random.default_rng(0))
    with pytest.raises(PrivacyBudgetExceeded, match="past the budget"):
        release(rs, CANDS, 2, acc, 0.1, np.random.default_rng(0))
    release(recs(3, tag="new"), CANDS, 2, acc, 0.1, np.random.default_rng(0))  # disjoint: parallel
    acc2 = Accountant(0.1)
    release(rs[:5], CANDS, 2, acc2, 0.05)
    release(rs[:5], CANDS, 2, acc2, 0.05)  # two halves of the budget compose to the whole
    with pytest.raises(PrivacyBudgetExceeded):
        release(rs[:5], CANDS, 2, acc2, 0.01)
    assert acc2.fresh([r.rid for r in rs], 0.05) == [r.rid for r in rs[5:]]
    back = Accountant.from_json(json.loads(json.dumps(acc2.to_json())))
    assert back.spent == acc2.spent and back.budget == 0.1
    for bad in ({"budget": 0.1}, {"budget": -1, "spent": {}}, {"budget": 0.1, "spent": {"x": "y"}}):
        with pytest.raises(CollectiveError):
            Accountant.from_json(bad)


def test_refused_release_spends_nothing():
    acc = Accountant(0.1)
    rs = recs(2)
    acc.charge([rs[0].rid], 0.08)
    with pytest.raises(PrivacyBudgetExceeded):
        release(rs, CANDS, 1, acc, 0.05)
    assert acc.spent == {rs[0].rid: 0.08}


def test_exact_release_is_the_histogram():
    rs = recs(4, cell=0, best=2) + recs(4, cell=3, best=4, tag="s")
    out = release(rs, CANDS, 5, Accountant(), math.inf)
    assert {s.cell for s in out} == {0, 3} and len(out) == 2 * len(CANDS)
    by = {(s.cell, s.config): s for s in out}
    assert by[(0, CANDS[2])].sum == pytest.approx(4 * math.log(2.0)) and by[(0, CANDS[2])].count == 4
    assert by[(3, CANDS[0])].sum == pytest.approx(4 * math.log(0.9))
    clipped = release([Record("x", 0, CANDS[0], 10.0)], CANDS, 1, Accountant(), math.inf)
    assert clipped[0].sum == pytest.approx(GAIN_CLIP)


def test_noise_has_the_calibrated_scale():
    """Every sum carries Laplace(L / (ε/2)) and every count Laplace(1 / (ε/2)): variance 2 b²."""
    rs = recs(20)
    rng = np.random.default_rng(0)
    sums, counts = [], []
    for _ in range(3000):
        out = release(rs, CANDS, 1, Accountant(1e9), 1.0, rng, min_count=-1e9)
        e = next(s for s in out if s.config == CANDS[2])
        sums.append(e.sum)
        counts.append(e.count)
    assert np.var(counts) == pytest.approx(2 * (1 / 0.5) ** 2, rel=0.12)
    assert np.var(sums) == pytest.approx(2 * (GAIN_CLIP / 0.5) ** 2, rel=0.12)
    assert np.mean(counts) == pytest.approx(20, abs=0.3)


def test_epsilon_bound_holds_empirically():
    """Neighbouring datasets (one record added): the probability of any event on a released count
    may change by at most e^{ε/2}; checked on "count >= t" with 20,000 draws each."""
    eps = 1.0
    base = [Record(f"a{i}", 0, CANDS[1], math.log(1.5)) for i in range(6)]
    extra = [*base, Record("x", 0, CANDS[1], GAIN_CLIP)]
    rng = np.random.default_rng(1)

    def tail(rs, t):
        hits = 0
        for _ in range(20_000):
            out = release(rs, CANDS, 1, Accountant(1e9), eps, rng, min_count=-1e9)
            hits += next(s for s in out if s.config == CANDS[1]).count >= t
        return hits / 20_000

    for t in (6.5, 8.0):
        p, q = tail(base, t), tail(extra, t)
        assert q / p <= math.exp(eps / 2) * 1.06  # sampling allowance (about 3 standard errors)
        assert q / p > 1.1  # and the record does matter: the check has teeth


def test_sync_interval_bounds_and_inputs():
    assert (SYNC_MIN_S, SYNC_MAX_S) == (60.0, 3600.0)
    assert check_interval(60) == 60.0 and check_interval(3600.0) == 3600.0
    for bad in (59.9, 3600.1, "600", None):
        with pytest.raises(CollectiveError, match="between 60 s and 3600 s"):
            check_interval(bad)
    with pytest.raises(CollectiveError):
        release(recs(1, cell=7), CANDS, 5, Accountant())
    with pytest.raises(CollectiveError):
        release(recs(1), [], 5, Accountant())
    with pytest.raises(CollectiveError):
        release([Record("r", 0, CANDS[0], float("nan"))], CANDS, 1, Accountant())
