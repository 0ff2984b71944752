"""Each DAG analysis against answers computed by hand on small graphs (see conftest.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wasm_torch.analyze.analyses import (
    affected_outputs,
    causal_cone,
    critical_path,
    parallel_branches,
    schedule_order,
    topological_depth,
)
from wasm_torch.analyze.dag import Dag, bits
from wasm_torch.analyze.lorentz import depth_embedding, lorentz_inner, pattern_features
from wasm_torch.analyze.mincut import MinCut
from wasm_torch.analyze.synthetic import graph_from_edges
from wasm_torch.errors import GraphError


def test_topological_depth(diamond):
    dag, _ = diamond
    assert topological_depth(dag) == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}


def test_causal_cone_and_affected_outputs(two_outputs):
    cones = causal_cone(two_outputs)
    want = {"p": ({"x"}, {"s", "t"}), "q": ({"y"}, {"t"}), "r": ({"x", "y"}, {"t"}),
            "s": ({"x"}, {"s"}), "t": ({"x", "y"}, {"t"})}
    assert {k: (set(c.inputs), set(c.outputs)) for k, c in cones.items()} == want
    assert cones["q"].score(2) == 0.5 and cones["p"].score(2) == 1.0
    assert affected_outputs(two_outputs, ["q"]) == ["t"]
    assert affected_outputs(two_outputs, ["s"]) == ["s"]
    assert affected_outputs(two_outputs, ["p"]) == ["s", "t"]
    assert affected_outputs(two_outputs, []) == []
    with pytest.raises(KeyError, match="unknown nodes"):
        affected_outputs(two_outputs, ["nope"])


def test_critical_path(diamond):
    dag, costs = diamond
    cp = critical_path(dag, costs)
    assert cp.earliest_start == {"a": 0, "b": 1, "c": 1, "d": 4, "e": 6}
    assert cp.bottom_level == {"a": 8, "b": 6, "c": 7, "d": 4, "e": 2}
    assert cp.slack == {"a": 0, "b": 1, "c": 0, "d": 0, "e": 0}
    assert cp.length == 8
    assert cp.path == ("a", "c", "d", "e")
    assert schedule_order(dag, costs) == ["a", "c", "b", "d", "e"]


def test_parallel_branches(diamond):
    dag, _ = diamond
    br = parallel_branches(dag)
    assert br.concurrency == {"a": 0, "b": 1, "c": 1, "d": 0, "e": 0}
    assert br.sync_points == ["a", "d", "e"]
    assert br.segment == {"a": -1, "b": 0, "c": 0, "d": -1, "e": -1}
    assert br.branch == {"a": -1, "b": 0, "c": 1, "d": -1, "e": -1}
    assert br.groups == ((("b",), ("c",)),)


def test_parallel_branches_two_towers():
    # x -> l1 -> l2 ; x -> r1 ; l2, r1 -> j : segment {l1, l2, r1} has branches [l1, l2] and [r1]
    g = graph_from_edges(["l1", "r1", "l2", "j"], [("l1", "l2"), ("l2", "j"), ("r1", "j")],
                         dict.fromkeys(["x", "l1", "r1", "l2", "j"], 4), inputs={"x": ["l1", "r1"]})
    br = parallel_branches(Dag.of(g))
    assert br.groups == ((("l1", "l2"), ("r1",)),)
    assert br.concurrency == {"l1": 1, "r1": 2, "l2": 1, "j": 0}


def test_mincut_gates(diamond):
    dag, _ = diamond
    mc = MinCut(dag)
    gates = mc.gates()
    assert [g for g, _ in gates] == [100, 120, 140, 160, 0]
    assert gates[1][1] == bits([0, 1])  # the cheapest boundary after b is {a, b}
    # every downset's cut is at least the gate of each of its maximal nodes
    for mask in range(1 << dag.n):
        if dag.is_downset(mask) and mask:
            maximal = [i for i in range(dag.n) if mask >> i & 1 and not dag.desc[i] & mask]
            assert all(dag.cut_bytes(mask) >= gates[i][0] for i in maximal)


def test_cut_bytes_by_hand(diamond):
    dag, _ = diamond
    assert {m: dag.cut_bytes(bits(m)) for m in [(0,), (0, 1), (0, 2), (0, 1, 2), (0, 1, 2, 3)]} == {
        (0,): 100, (0, 1): 120, (0, 2): 140, (0, 1, 2): 160, (0, 1, 2, 3): 160}
    assert dag.cut_bytes(0) == 400  # nothing ran yet: the input has to cross
    assert dag.total_traffic() == 400 + 100 + 20 + 40 + 60


def test_lorentz_embedding(diamond):
    dag, _ = diamond
    emb = depth_embedding(dag, scale=0.5)
    assert emb.parent == (-1, 0, 0, 1, 3)  # d's deepest predecessors tie (b, c): the first wins
    r = [0.5, 1.0, 1.0, 1.5, 2.0]
    theta = [math.pi, math.pi / 2, 3 * math.pi / 2, math.pi / 2, math.pi / 2]
    want = np.array([[math.cosh(a), math.sinh(a) * math.cos(t), math.sinh(a) * math.sin(t)]
                     for a, t in zip(r, theta, strict=True)])
    np.testing.assert_allclose(emb.points, want, atol=1e-12)
    for p in emb.points:  # on the hyperboloid
        assert lorentz_inner(p, p) == pytest.approx(-1.0)
    assert emb.distance("b", "d") == pytest.approx(0.5)  # an only child: same angle, one step out
    assert emb.distance("d", "e") == pytest.approx(0.5)
    assert emb.distance("b", "c") == pytest.approx(2.0)  # opposite siblings: arcosh(cosh 2)
    assert np.all(np.linalg.norm(emb.poincare(), axis=1) < 1)
    f = pattern_features(emb)
    assert f.shape == (8,) and f.dtype == np.float32
    assert lorentz_inner(f[:3].astype(np.float64), f[:3].astype(np.float64)) == pytest.approx(-1.0, abs=1e-5)
    assert f[4] == pytest.approx(2.0)  # max radius = e's
    assert f[6] == pytest.approx(1 / 5)  # one node (a) has more than one child


def test_dag_rejects_bad_costs_and_bindings(diamond):
    dag, _ = diamond
    with pytest.raises(GraphError, match="finite and >= 0"):
        dag.costs(lambda n: -1.0)
    with pytest.raises(GraphError, match="finite and >= 0"):
        dag.costs(lambda n: float("nan"))
    with pytest.raises(GraphError, match="unknown dimensions"):
        Dag.of(dag.graph, {"seq": 3})


def test_draw_partition_writes_a_png(diamond, tmp_path):
    from wasm_torch.analyze.draw import draw_partition
    from wasm_torch.analyze.partition import partition

    dag, costs = diamond
    p = partition(dag, costs, 2, tolerance=0.2)
    gates = np.array([g for g, _ in MinCut(dag).gates()], dtype=float)
    out = draw_partition(dag, p, costs, tmp_path / "d.png", gates=gates)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
