"""NumPy reference interpreter: evaluates a graph with each op's `interp` facet (ir/op.py).

Slow and obvious on purpose. The compiler's passes must not change what this computes, and the
generated wasm is tested against both this and PyTorch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import GraphError
from .graph import DTYPES, Graph, Node, Symbol, evaluate_shape
from .op import op_def


def run_node(n: Node, args: list[Any], bind: dict, out_shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """One node's outputs: what its op means, on NumPy arrays (None for an absent optional input)."""
    return op_def(n.op).interp(n, args, bind, out_shapes)


def bind_symbols(symbols: dict[str, Symbol], inputs: dict[str, np.ndarray]) -> dict:
    import sympy

    return {
        sympy.Symbol(s.name, integer=True, positive=True): inputs[s.input].shape[s.axis]
        for s in symbols.values()
    }


def run(g: Graph, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Evaluate the graph on named numpy inputs; returns the outputs in order."""
    env: dict[str, np.ndarray] = dict(g.consts)
    for name in g.inputs:
        env[name] = np.asarray(inputs[name], dtype=DTYPES[g.types[name].dtype])
    bind = bind_symbols(g.symbols, env)
    for n in g.nodes:
        args = [env[i] if i else None for i in n.inputs]
        shapes = [evaluate_shape(g.types[o].shape, bind) for o in n.outputs]
        outs = run_node(n, args, bind, shapes)
        for name, val, shape in zip(n.outputs, outs, shapes, strict=True):
            if tuple(val.shape) != shape:
                raise GraphError(f"{n.op} produced shape {val.shape}, IR says {shape} ({name})")
            env[name] = val
    return [env[o] for o in g.outputs]
