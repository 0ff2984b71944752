"""Algebraic clean-ups that make later stages simpler.

- reshape(reshape(x)) -> reshape(x); reshape to the same shape -> x
- cast to the value's own dtype -> x
"""

from __future__ import annotations

from ..ir.graph import Graph, Node


def simplify(g: Graph) -> Graph:
    rename: dict[str, str] = {}
    producers: dict[str, Node] = {}
    nodes: list[Node] = []
    for n in g.nodes:
        n = Node(n.op, tuple(rename.get(i, i) for i in n.inputs), n.outputs, n.attrs, n.source)
        out_t = g.types[n.outputs[0]]
        src = n.inputs[0] if n.inputs else ""
        if n.op in ("reshape", "cast") and g.types[src] == out_t and n.outputs[0] not in g.outputs:
            rename[n.outputs[0]] = src
            continue
        if n.op == "reshape" and src in producers and producers[src].op == "reshape":
            n = Node("reshape", producers[src].inputs, n.outputs, n.attrs, n.source)
        nodes.append(n)
        producers[n.outputs[0]] = n
    outputs = tuple(rename.get(o, o) for o in g.outputs)
    return g.replace(nodes=tuple(nodes), outputs=outputs)
