"""Incremental repartitioning: after any cost change the session's answer equals a fresh solve."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from wasm_torch.analyze.incremental import PartitionSession
from wasm_torch.analyze.partition import Partitioner, PartitionOptions
from wasm_torch.analyze.synthetic import random_dag, transformer_like
from wasm_torch.compiler.ir.graph import Graph, Node, Symbol, TensorType
from wasm_torch.errors import PartitionError


def fresh(g, costs, opts):
    return Partitioner(g, costs, opts).solve()


def test_small_cost_noise_takes_the_fast_path_and_stays_optimal():
    g, costs = transformer_like(12)
    opts = PartitionOptions(4, 0.1)
    s = PartitionSession(g, costs, opts)
    first = s.solve()
    rng = np.random.default_rng(0)
    for _ in range(5):
        new = costs * rng.uniform(0.97, 1.03, size=costs.shape)
        got = s.update(new)
        assert s.last_update["mode"] == "fast"
        want = fresh(g, new, opts)
        assert got.crossing_bytes == want.crossing_bytes and got.optimal
        assert got.boundaries == first.boundaries  # the residual cuts stay where they are
        assert [st.cost for st in got.stages] == pytest.approx([float(new[list(_idx(s, st.keys))].sum())
                                                                for st in got.stages])


def _idx(s, keys):
    index = s.dag.key_index()
    return [index[k] for k in keys]


def test_a_large_change_resolves_and_matches_a_fresh_solve():
    g, costs = transformer_like(12)
    opts = PartitionOptions(4, 0.1)
    s = PartitionSession(g, costs, opts)
    s.solve()
    flows_before = s.partitioner.mc.calls
    new = costs.copy()
    new[:40] *= 3.0  # the first four layers got three times slower: stages must move
    got = s.update(new)
    assert s.last_update["mode"] == "resolve"
    want = fresh(g, new, opts)
    assert got.crossing_bytes == want.crossing_bytes and got.boundaries != s.deployed.boundaries
    assert s.partitioner.mc.calls - flows_before < Partitioner(g, new, opts).solve().stats["max_flows"] + 1


@pytest.mark.parametrize("seed", range(8))
def test_random_update_sequences_match_fresh_solves(seed):
    g, costs = random_dag(30, seed, reach=5, fanin=3)
    opts = PartitionOptions(3, 0.3)
    s = PartitionSession(g, costs, opts)
    try:
        s.solve()
    except PartitionError:
        pytest.fail("the seed graphs are chosen feasible")
    rng = np.random.default_rng(seed)
    cur = costs.copy()
    for step in range(6):
        if step % 2:
            idx = rng.choice(len(cur), size=3, replace=False)  # a few nodes re-measured
            changes = {s.dag.keys[i]: float(cur[i] * rng.uniform(0.5, 2.0)) for i in idx}
            for k, v in changes.items():
                cur[s.dag.key_index()[k]] = v
            arg = changes
        else:
            cur = cur * rng.uniform(0.8, 1.25, size=cur.shape)  # a different machine
            arg = cur
        try:
            want = fresh(g, cur, opts)
        except PartitionError:
            with pytest.raises(PartitionError):
                s.update(arg)
            return
        got = s.update(arg)
        assert got.crossing_bytes == want.crossing_bytes
        assert not s.partitioner.violations(got.boundaries)


def seq_graph() -> Graph:
    """x[s] -> n0[100 s] -> n1[s²] -> n2[40 s] -> n3[s]: which cut is cheapest depends on s."""
    s = sympy.Symbol("s", integer=True, positive=True)
    t = {"x": TensorType("f32", (s,)), "n0": TensorType("f32", (100 * s,)), "n1": TensorType("f32", (s * s,)),
         "n2": TensorType("f32", (40 * s,)), "n3": TensorType("f32", (s,))}
    nodes = (Node("relu", ("x",), ("n0",)), Node("relu", ("n0",), ("n1",)), Node("relu", ("n1",), ("n2",)),
             Node("relu", ("n2",), ("n3",)))
    return Graph(("x",), ("n3",), nodes, t, {}, {"s": Symbol("s", 1, 64, "x", 0)})


def test_new_bindings_rebuild_and_move_the_cut():
    g = seq_graph()
    s = PartitionSession(g, np.ones(4), PartitionOptions(2, 0.5))
    p = s.solve()  # at s = 64: cuts 25600, 16384, 10240 bytes -> after n2
    assert p.stages[0].keys == ("n0", "n1", "n2") and p.crossing_bytes == 40 * 64 * 4
    q = s.update(bindings={"s": 8})  # 3200, 256, 1280 -> after n1
    assert s.last_update["mode"] == "rebuild"
    assert q.stages[0].keys == ("n0", "n1") and q.crossing_bytes == 64 * 4
    with pytest.raises(PartitionError, match="unknown nodes"):
        s.update({"nope": 1.0})
