"""Spike-based Byzantine agreement: never two different decisions among correct members, over
random schedules (hypothesis) with up to f Byzantine members of every kind; validity; termination
under fair delivery; and the bound is tight — with f + 1 Byzantine members the split attack makes two
correct members decide differently."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasm_torch.collective.agreement import BYZANTINE, Member, Neuron, Spike, coin, max_faulty, simulate
from wasm_torch.collective.errors import CollectiveError


def test_neuron_fires_once_per_threshold_on_distinct_senders():
    nr = Neuron((2, 3))
    assert nr.spike("a") == []
    assert nr.spike("a") == []  # the same sender twice counts once
    assert nr.spike("b") == [2]
    assert nr.spike("c") == [3]
    assert nr.spike("d") == [] and nr.potential == 4


def test_max_faulty_is_the_bound():
    assert [max_faulty(n) for n in (1, 2, 3, 4, 6, 7, 10)] == [0, 0, 0, 1, 1, 2, 3]


def test_single_member_decides_its_input():
    for bit in (0, 1):
        m = Member("a", ["a"], bit, "x")
        out = m.start()
        while out:
            out = [o for s in out for o in m.receive("a", s)]
        assert m.decided == bit


def test_validation():
    with pytest.raises(CollectiveError):
        Member("z", ["a", "b"], 0, "x")
    with pytest.raises(CollectiveError):
        Member("a", ["a"], 2, "x")
    with pytest.raises(CollectiveError):
        Spike("est", 1, 2)
    with pytest.raises(CollectiveError):
        simulate(4, {0: "bogus"})
    assert coin("x", 1) in (0, 1)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.sampled_from([4, 5, 7, 10]),
    strategy=st.sampled_from(BYZANTINE),
    schedule=st.sampled_from(["random", "partition"]),
    seed=st.integers(0, 10**6),
    byz_count=st.integers(0, 3),
    inputs=st.lists(st.integers(0, 1), min_size=10, max_size=10),
)
def test_correct_members_never_disagree(n, strategy, schedule, seed, byz_count, inputs):
    f = max_faulty(n)
    k = min(byz_count, f)
    byz = {i: strategy for i in range(n - k, n)}
    out = simulate(n, byz, inputs[:n], seed=seed, schedule=schedule)
    assert out.agreement, out.decisions
    assert out.validity, (out.inputs, out.decisions)
    assert out.terminated, out  # fair delivery: everyone decides (the coin is common)


def test_termination_rate_under_random_schedules():
    done = sum(simulate(7, {5: "equivocate", 6: "random"}, seed=s).terminated for s in range(40))
    assert done == 40


@pytest.mark.parametrize("n", [4, 7, 10])
def test_beyond_the_bound_agreement_breaks(n):
    """f + 1 Byzantine members telling each half of the correct ones a different story, with the
    network delaying messages between the halves: two correct members decide differently. The bound
    n >= 3f + 1 is not a convenience."""
    f = max_faulty(n)
    broken = 0
    for seed in range(10):
        byz = {i: "split" for i in range(n - f - 1, n)}
        out = simulate(n, byz, seed=seed, schedule="partition")
        broken += not out.agreement
    assert broken >= 5
