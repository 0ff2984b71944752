"""The cost seam: how much compute one node is (for stage balance and the critical path).

Every analysis takes a plain `cost: Callable[[Node], float]`, so tests use hand-made costs and
callers can plug in measurements. `flops_cost(graph)` is the default: the compiler's own FLOP
count for each node (compiler/cost.py: the op registry's `flops` facet, symbolic over dynamic
dimensions), evaluated at the given bindings (default: each dynamic dimension at its max). `scaled_cost` applies measured
correction factors on top of any cost (what the tension loop feeds back from timed runs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sympy

from ..compiler.ir.graph import Graph, Node, evaluate_dim
from ..errors import GraphError

CostFn = Callable[[Node], float]


def _bindings(g: Graph, bindings: Mapping[str, int] | None) -> dict[sympy.Symbol, int]:
    out = dict(g.max_bindings())
    for k, v in (bindings or {}).items():
        if k not in g.symbols:
            raise GraphError(f"binding for unknown dimension {k!r}; the graph has {sorted(g.symbols)}")
        out[sympy.Symbol(k, integer=True, positive=True)] = int(v)
    return out


def flops_cost(g: Graph, bindings: Mapping[str, int] | None = None) -> CostFn:
    """cost(node) = the compiler's FLOP count for the node (compiler/cost.py) at `bindings`."""
    from ..compiler.cost import node_flops

    symb = _bindings(g, bindings)
    table = {id(n): float(evaluate_dim(f, symb)) for n, f in zip(g.nodes, node_flops(g), strict=True)}

    def cost(node: Node) -> float:
        c = table.get(id(node))
        if c is None:
            raise GraphError(f"node {node.outputs[0]!r} ({node.op}) is not in the graph this cost model was made for")
        return c

    return cost


def scaled_cost(base: CostFn, factors: Mapping[str, float]) -> CostFn:
    """base(node) times factors[node's first output] (default 1): measured corrections."""
    for k, f in factors.items():
        if not f >= 0:
            raise GraphError(f"cost factor for {k!r} is {f}; factors must be >= 0")

    def cost(node: Node) -> float:
        return base(node) * factors.get(node.outputs[0], 1.0)

    return cost


def table_cost(table: Mapping[str, float], default: float | None = None) -> CostFn:
    """cost from a table keyed by each node's first output (hand-made graphs, measurements)."""

    def cost(node: Node) -> float:
        k = node.outputs[0]
        if k in table:
            return float(table[k])
        if default is None:
            raise GraphError(f"no cost for node {k!r} ({node.op}) in the cost table")
        return float(default)

    return cost
