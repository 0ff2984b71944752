"""How much work a graph is: each node's FLOPs from its op's `flops` facet, symbolic over the
dynamic dimensions.

The total goes into the manifest (`work.flops`, a dimension expression over the symbols), so the
work of one call is a pure function of the compiled graph and the bound input shapes — the same on
every host and engine (the edge network meters and pays by it; browsers have no fuel counter).
The per-node figures are what the partitioner balances and the DAG analyses weigh.
"""

from __future__ import annotations

import sympy

from .codegen.dims import py_dim
from .ir.graph import Dim, Graph, dim
from .ir.op import op_def


def node_flops(g: Graph) -> list[Dim]:
    """FLOPs of every node, in graph order (0 for aliases)."""
    out: list[Dim] = []
    for n in g.nodes:
        ins = [g.types[i] for i in n.inputs if i]
        outs = [g.types[o] for o in n.outputs]
        out.append(dim(op_def(n.op).flops(n, ins, outs)))
    return out


def graph_flops(g: Graph) -> Dim:
    return dim(sum(node_flops(g), sympy.Integer(0)))


def work(g: Graph) -> dict[str, int | str]:
    """The manifest's `work` record: total FLOPs of one call (int, or an expression over symbols)."""
    return {"flops": py_dim(graph_flops(g))}
