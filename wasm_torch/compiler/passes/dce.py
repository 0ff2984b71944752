"""Dead-code elimination: drop nodes whose outputs nobody uses, and unused constants."""

from __future__ import annotations

from ..ir.graph import Graph


def eliminate_dead_code(g: Graph) -> Graph:
    live = set(g.outputs)
    kept = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            kept.append(n)
            live.update(i for i in n.inputs if i)
    kept.reverse()
    consts = {k: v for k, v in g.consts.items() if k in live}
    names = set(g.inputs) | set(consts) | {o for n in kept for o in n.outputs}
    return g.replace(nodes=tuple(kept), consts=consts, types={k: t for k, t in g.types.items() if k in names})
