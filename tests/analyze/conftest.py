"""Hand-made graphs with hand-computed answers, shared by the analysis tests."""

from __future__ import annotations

import numpy as np
import pytest

from wasm_torch.analyze.dag import Dag
from wasm_torch.analyze.synthetic import graph_from_edges


@pytest.fixture
def diamond() -> tuple[Dag, np.ndarray]:
    """x -> a; a -> b, a -> c; b, c -> d; d -> e; a -> e (a skip connection). Output e.

    bytes: x 400, a 100, b 20, c 40, d 60, e 8; costs a 1, b 2, c 3, d 2, e 2 (total 10).
    Boundaries (downsets) and their cut bytes, by hand: {a} 100 (a is read by b, c, e),
    {a,b} 120, {a,c} 140, {a,b,c} 160, {a,b,c,d} 160 (a and d are read by e).
    """
    g = graph_from_edges(
        ["a", "b", "c", "d", "e"],
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e"), ("a", "e")],
        {"x": 400, "a": 100, "b": 20, "c": 40, "d": 60, "e": 8},
        inputs={"x": ["a"]},
    )
    return Dag.of(g), np.array([1.0, 2.0, 3.0, 2.0, 2.0])


@pytest.fixture
def two_outputs() -> Dag:
    """inputs x, y; p = f(x), q = f(y), r = f(p, q), s = f(p), t = f(r); outputs s and t."""
    g = graph_from_edges(
        ["p", "q", "r", "s", "t"],
        [("p", "r"), ("q", "r"), ("p", "s"), ("r", "t")],
        {"x": 4, "y": 4, "p": 4, "q": 4, "r": 4, "s": 4, "t": 4},
        inputs={"x": ["p"], "y": ["q"]},
        outputs=["s", "t"],
    )
    return Dag.of(g)


@pytest.fixture(scope="session")
def pipelines(tmp_path_factory, artifacts):
    """pipelines(name, k) -> (pipeline artifact, unsplit artifact, model, example inputs), memoised."""
    import wasm_torch
    from wasm_torch.zoo import build

    root = tmp_path_factory.mktemp("pipelines")
    made: dict = {}

    def get(name: str, k):
        key = (name, str(k))
        if key not in made:
            model, example, dyn = build(name)
            whole = artifacts(name, model, example, dyn)
            pipe = wasm_torch.compile(model, example, root / f"{name}_{len(made)}", dynamic_shapes=dyn, stages=k)
            made[key] = (pipe, whole, model, example)
        return made[key]

    return get
