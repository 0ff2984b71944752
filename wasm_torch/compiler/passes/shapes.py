"""Shape propagation: recompute every node's output type from its inputs with the op rules.

Passes that rewrite nodes can leave types stale; this makes them consistent again (and the
verifier checks the result).
"""

from __future__ import annotations

from ..ir.graph import Graph
from ..ir.op import infer


def propagate_shapes(g: Graph) -> Graph:
    types = {k: v for k, v in g.types.items() if k in g.consts or k in g.inputs}
    for n in g.nodes:
        for o, t in zip(n.outputs, infer(n, [types[i] for i in n.inputs if i]), strict=True):
            types[o] = t
    return g.replace(types=types)
