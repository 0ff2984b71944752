"""Before/after pass tests: a graph written as IR text, one pass, the expected text, and the NumPy
interpreter's proof that the pass did not change what the graph computes."""

from __future__ import annotations

from collections.abc import Callable
from textwrap import dedent

import numpy as np
import pytest

from wasm_torch.compiler.ir import Graph, format_graph, parse_graph, verify
from wasm_torch.compiler.ir.interp import run

PassFn = Callable[[Graph], Graph]


def random_inputs(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name in g.inputs:
        t = g.types[name]
        shape = tuple(int(d) for d in t.shape)
        out[name] = rng.standard_normal(shape).astype(np.float32) if t.dtype == "f32" else rng.integers(0, 3, shape)
    return out


def apply(fn: PassFn, before: str, after: str | None = None, consts: dict | None = None, same_meaning: bool = True) -> Graph:
    """Parse `before`, run the pass, check the result against `after` (format_graph text; non-scalar
    constants are listed without values) and, unless told otherwise, that both compute the same."""
    g = parse_graph(dedent(before), consts)
    if same_meaning:
        verify(g, "test input")
    h = fn(g)
    verify(h, fn.__name__)
    if after is not None:
        assert format_graph(h) == dedent(after).strip(), format_graph(h)
    if same_meaning:
        x = random_inputs(g)
        for want, got in zip(run(g, x), run(h, x), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    return h


@pytest.fixture
def check_pass():
    return apply
