"""Hand-made and generated graphs for the analyses' tests, docs and benchmarks.

These graphs are shaped for the analyses only (nodes, value sizes, weights, costs): their ops are
placeholders ("add" joins, "relu" otherwise) and they are not meant to be compiled. Each node has one
output named after the node; the byte size of a value is set directly by a 1-D f32 type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..compiler.ir.graph import Graph, Node, TensorType


def graph_from_edges(
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str]],
    nbytes: Mapping[str, int],
    *,
    inputs: Mapping[str, Sequence[str]] | None = None,
    weights: Mapping[str, tuple[int, Sequence[str]]] | None = None,
    outputs: Sequence[str] | None = None,
) -> Graph:
    """A graph whose node `a` reads the output of node `b` for each edge (b, a).

    nodes: names in a topological order (each is also its output value's name); nbytes: bytes of each
    node's output and each graph input (multiples of 4); inputs: graph input -> the nodes reading it;
    weights: weight -> (bytes, nodes reading it); outputs: graph outputs (default: nodes nobody reads).
    """
    inputs = dict(inputs or {})
    weights = dict(weights or {})
    reads: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        reads[dst].append(src)
    for x, readers in inputs.items():
        for r in readers:
            reads[r].append(x)
    for w, (_, readers) in weights.items():
        for r in readers:
            reads[r].append(w)
    types = {}
    for v in [*nodes, *inputs]:
        b = int(nbytes[v])
        if b % 4:
            raise ValueError(f"bytes of {v!r} must be a multiple of 4, got {b}")
        types[v] = TensorType("f32", (b // 4,))
    consts = {}
    for w, (b, _) in weights.items():
        types[w] = TensorType("f32", (b // 4,))
        consts[w] = np.zeros(b // 4, np.float32)
    read_somewhere = {src for src, _ in edges}
    outs = tuple(outputs) if outputs is not None else tuple(n for n in nodes if n not in read_somewhere)
    g_nodes = tuple(Node("add" if len(reads[n]) > 1 else "relu", tuple(reads[n]), (n,)) for n in nodes)
    return Graph(tuple(inputs), outs, g_nodes, types, consts)


def random_dag(n: int, seed: int, *, fanin: int = 2, reach: int = 4, max_kb: int = 16,
               weights: int = 0, shared: bool = False, constants: int = 0) -> tuple[Graph, np.ndarray]:
    """A random connected DAG of n nodes (each reads up to `fanin` of the `reach` nodes before it)
    with random value sizes and random costs; optionally weights (`shared` ones read by 2 nodes) and
    `constants` constant nodes (computed from a weight alone, a chain c0 -> c1 ...) read by random
    later nodes. The constant nodes come first and are counted in n."""
    rng = np.random.default_rng(seed)
    m = min(constants, n - 1)
    consts = [f"c{i}" for i in range(m)]
    body = [f"n{i}" for i in range(n - m)]
    names = consts + body
    edges = [(consts[i - 1], consts[i]) for i in range(1, m)]
    for i in range(1, len(body)):
        lo = max(0, i - reach)
        k = int(rng.integers(1, fanin + 1))
        for j in sorted(set(rng.integers(lo, i, size=k).tolist())):
            edges.append((body[j], body[i]))
    for c in consts:
        for r in sorted(set(rng.integers(0, len(body), size=2).tolist())):
            edges.append((c, body[r]))
    nbytes = {v: 4 * int(rng.integers(1, max_kb * 256 + 1)) for v in names}
    nbytes["x"] = 4 * int(rng.integers(1, max_kb * 256 + 1))
    ws = {f"cw{i}": (4 * int(rng.integers(1, 64)), [c]) for i, c in enumerate(consts[:1])}
    for w in range(weights):
        readers = [names[int(i)] for i in rng.choice(n, size=2 if shared else 1, replace=False)]
        ws[f"w{w}"] = (4 * int(rng.integers(1, 64)), readers)
    g = graph_from_edges(names, edges, nbytes, inputs={"x": [body[0]]}, weights=ws)
    costs = rng.uniform(1.0, 10.0, size=n)
    return g, costs


def transformer_like(layers: int, *, d: int = 64, seq: int = 16, hidden: int = 4) -> tuple[Graph, np.ndarray]:
    """A residual stack shaped like a transformer encoder: per layer norm, q/k/v branches, attention,
    projection, residual add, norm, MLP up/down, residual add (10 nodes per layer). Costs are the
    FLOPs of the matmuls (and element counts elsewhere); values are f32 activations."""
    act = seq * d * 4
    names, edges, nbytes, costs, ws = [], [], {"x": act}, [], {}

    def add(name: str, srcs: list[str], size: int, cost: float, weight: int = 0) -> str:
        names.append(name)
        edges.extend((s, name) for s in srcs if s != "x")
        nbytes[name] = size
        costs.append(cost)
        if weight:
            ws[f"{name}.w"] = (weight, [name])
        return name

    first = add("embed", [], act, seq * d, d * 4)
    h = first
    mm = 2.0 * seq * d * d
    for i in range(layers):
        p = f"l{i}."
        ln = add(p + "ln1", [h], act, 5 * seq * d, 2 * d * 4)
        q = add(p + "q", [ln], act, mm, d * d * 4)
        k = add(p + "k", [ln], act, mm, d * d * 4)
        v = add(p + "v", [ln], act, mm, d * d * 4)
        a = add(p + "attn", [q, k, v], act, 4.0 * seq * seq * d)
        o = add(p + "proj", [a], act, mm, d * d * 4)
        r = add(p + "res1", [h, o], act, seq * d)
        ln2 = add(p + "ln2", [r], act, 5 * seq * d, 2 * d * 4)
        up = add(p + "up", [ln2], hidden * act, hidden * mm, hidden * d * d * 4)
        down = add(p + "down", [up], act, hidden * mm, hidden * d * d * 4)
        h = add(p + "res2", [r, down], act, seq * d)
    g = graph_from_edges(names, edges, nbytes, inputs={"x": [first]}, weights=ws, outputs=[h])
    return g, np.array(costs)
