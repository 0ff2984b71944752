"""Constant folding: evaluate nodes whose inputs are all constants with the reference interpreter.

Folding turns `permute(weight)` into a pre-transposed weight and batch-norm statistics into one
scale and one shift. It never folds a node whose result is much larger than its inputs (an
`expand` of a small constant would bloat the weights file) nor nodes that depend on symbols.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ir.interp import run_node

MAX_GROWTH_BYTES = 4096  # a folded result may exceed its inputs by at most this much


def fold_constants(g: Graph) -> Graph:
    consts = dict(g.consts)
    types = dict(g.types)
    nodes = []
    for n in g.nodes:
        ins = [i for i in n.inputs if i]
        static = all(types[o].is_static for o in n.outputs)
        if static and all(i in consts for i in ins) and not _symbolic_attrs(n.attrs):
            in_bytes = sum(consts[i].nbytes for i in ins)
            out_bytes = sum(int(np.prod(types[o].shape)) * types[o].itemsize for o in n.outputs)
            if out_bytes <= in_bytes + MAX_GROWTH_BYTES:
                args = [consts[i] if i else None for i in n.inputs]
                outs = run_node(n, args, {}, [types[o].shape for o in n.outputs])
                for o, v in zip(n.outputs, outs, strict=True):
                    consts[o] = np.array(v, order="C", copy=True)
                continue
        nodes.append(n)
    return g.replace(nodes=tuple(nodes), consts=consts, types=types)


def _symbolic_attrs(attrs: dict) -> bool:
    def sym(v: object) -> bool:
        if isinstance(v, (tuple, list)):
            return any(sym(x) for x in v)
        return hasattr(v, "free_symbols")

    return any(sym(v) for v in attrs.values())
