"""A read-only DAG view of an IR `Graph`: the indexes every analysis and the partitioner share.

Nodes are numbered in the graph's own order (a topological order). Sets of nodes are Python ints
used as bitsets (bit i = node i): subset tests, unions and ancestor closures are then one integer
operation each, which keeps the partitioner's searches fast on graphs of thousands of nodes.

Values come in three kinds: graph inputs (no producer: they arrive from the caller), constants
(weights; they are not traffic, they belong to the stages that use them) and node outputs. Nodes
computed from constants alone (an expanded attention mask, an arange) are "constant nodes": their
outputs never cross a boundary, each stage that reads one recomputes it. They sit before every
boundary and cost nothing in the balance (an expanded mask or an arange takes microseconds). The
bytes of a value are its element count at the given symbol bindings (default: each dynamic
dimension at its declared maximum, what the memory plan is sized for) times the item size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sympy

from ..compiler.ir.graph import Graph, Node, evaluate_shape
from ..errors import GraphError

CostFn = Callable[[Node], float]


def bits(indices: Iterator[int] | list[int] | set[int] | range) -> int:
    """The bitset holding `indices`."""
    out = 0
    for i in indices:
        out |= 1 << i
    return out


def members(mask: int) -> Iterator[int]:
    """The indices set in `mask`, ascending."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def popcount(mask: int) -> int:
    return mask.bit_count()


@dataclass(frozen=True)
class Dag:
    """Indexes over one graph. Build with `Dag.of(graph)`; never mutated afterwards."""

    graph: Graph
    keys: tuple[str, ...]  # node i's name: its first output value (unique in a graph)
    preds: tuple[frozenset[int], ...]  # nodes whose outputs node i reads
    succs: tuple[frozenset[int], ...]
    producer: Mapping[str, int]  # non-constant, non-input value -> producing node
    consumers: Mapping[str, tuple[int, ...]]  # any value -> nodes reading it (each once)
    value_bytes: Mapping[str, int]  # every value and constant at the bindings
    anc: tuple[int, ...]  # bitset of strict ancestors of node i
    desc: tuple[int, ...]  # bitset of strict descendants of node i
    const_users: Mapping[str, int]  # constant -> bitset of nodes reading it
    output_nodes: Mapping[str, int]  # graph output value -> producing node (absent for inputs/consts)
    constant: int  # bitset of nodes computed from weights alone (no graph input upstream)

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def all(self) -> int:
        return (1 << self.n) - 1

    @staticmethod
    def of(g: Graph, bindings: Mapping[str, int] | None = None) -> Dag:
        """Index `g`. bindings: symbol name -> size for the byte counts (default: each symbol's max)."""
        if bindings is None:
            symb = g.max_bindings()
        else:
            unknown = sorted(set(bindings) - set(g.symbols))
            if unknown:
                raise GraphError(f"bindings name unknown dimensions {unknown}; the graph has {sorted(g.symbols)}")
            symb = dict(g.max_bindings())
            symb.update({sympy.Symbol(k, integer=True, positive=True): int(v) for k, v in bindings.items()})
        producer: dict[str, int] = {}
        keys = []
        for i, nd in enumerate(g.nodes):
            if not nd.outputs:
                raise GraphError(f"node {i} ({nd.op}) has no outputs; cannot name it")
            keys.append(nd.outputs[0])
            for o in nd.outputs:
                producer[o] = i
        consumers: dict[str, list[int]] = {}
        preds: list[set[int]] = [set() for _ in g.nodes]
        succs: list[set[int]] = [set() for _ in g.nodes]
        for i, nd in enumerate(g.nodes):
            for v in dict.fromkeys(x for x in nd.inputs if x):
                consumers.setdefault(v, []).append(i)
                p = producer.get(v)
                if p is not None:
                    if p >= i:
                        raise GraphError(f"node {i} ({nd.op}) reads {v!r} before node {p} writes it")
                    preds[i].add(p)
                    succs[p].add(i)
        sizes = {}
        for v, t in g.types.items():
            shape = evaluate_shape(t.shape, symb)
            sizes[v] = int(np.prod(shape, dtype=np.int64)) * t.itemsize
        anc = [0] * len(keys)
        for i in range(len(keys)):
            a = 0
            for p in preds[i]:
                a |= anc[p] | (1 << p)
            anc[i] = a
        desc = [0] * len(keys)
        for i in range(len(keys) - 1, -1, -1):
            d = 0
            for s in succs[i]:
                d |= desc[s] | (1 << s)
            desc[i] = d
        const_users = {c: bits(consumers.get(c, [])) for c in g.consts}
        constant = 0
        for i, nd in enumerate(g.nodes):
            if not any(v in g.inputs for v in nd.inputs) and all(constant >> p & 1 for p in preds[i]):
                constant |= 1 << i
        return Dag(
            graph=g,
            keys=tuple(keys),
            preds=tuple(frozenset(p) for p in preds),
            succs=tuple(frozenset(s) for s in succs),
            producer=producer,
            consumers={v: tuple(c) for v, c in consumers.items()},
            value_bytes=sizes,
            anc=tuple(anc),
            desc=tuple(desc),
            const_users=const_users,
            output_nodes={o: producer[o] for o in g.outputs if o in producer},
            constant=constant,
        )

    # ---- values ----------------------------------------------------------------------------------
    def traffic_values(self) -> list[str]:
        """Values that may cross a stage boundary: graph inputs and node outputs that are read —
        except outputs of constant nodes, which a stage recomputes instead (see `recomputed`)."""
        return [v for v, _, _ in self._traffic]

    @cached_property
    def _traffic(self) -> tuple[tuple[str, int, int], ...]:
        """(value, producer or -1 for a graph input, bitset of its readers) of every traffic value."""
        out = []
        for v, readers in self.consumers.items():
            if v in self.graph.consts:
                continue
            p = self.producer.get(v, -1)
            if p >= 0 and self.constant >> p & 1:
                continue
            out.append((v, p, bits(readers)))
        return tuple(out)

    def readers(self, v: str) -> int:
        """Bitset of the nodes reading value v."""
        return bits(self.consumers.get(v, ()))

    def recomputed(self, stage: int, *, last: bool = False) -> int:
        """The constant nodes a stage runs itself (an expanded mask, an arange) instead of receiving
        their outputs: those its nodes read, with their constant ancestors; the last stage also runs
        constant nodes that make graph outputs."""
        need = 0
        stage &= ~self.constant
        for i in members(stage):
            for p in self.preds[i]:
                if self.constant >> p & 1:
                    need |= 1 << p | (self.anc[p] & self.constant)
        if last:
            for i in self.output_nodes.values():
                if self.constant >> i & 1:
                    need |= 1 << i | (self.anc[i] & self.constant)
        return need

    def total_traffic(self) -> int:
        """Bytes of every value some node reads (graph inputs included): the tension's denominator."""
        return sum(self.value_bytes[v] for v in self.traffic_values())

    def cut_bytes(self, inside: int) -> int:
        """Bytes that must leave the node set `inside` (a downset): values produced inside (or graph
        inputs) and read by a node outside it."""
        return sum(self.value_bytes[v] for v in self.cut_values(inside))

    def cut_values(self, inside: int) -> list[str]:
        return [v for v, p, readers in self._traffic if (p < 0 or inside >> p & 1) and readers & ~inside]

    def is_downset(self, mask: int) -> bool:
        return all(self.anc[i] & ~mask == 0 for i in members(mask))

    def key_index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    # ---- costs -----------------------------------------------------------------------------------
    def costs(self, cost: CostFn) -> np.ndarray:
        """cost(node) for every node as float64; negative or non-finite costs are rejected."""
        c = np.array([float(cost(nd)) for nd in self.graph.nodes], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(c) | (c < 0))
        if bad.size:
            i = int(bad[0])
            raise GraphError(f"cost of node {self.keys[i]!r} ({self.graph.nodes[i].op}) is {c[i]}; "
                             "costs must be finite and >= 0")
        return c


def mask_array(mask: int, n: int) -> np.ndarray:
    """The bitset as a boolean array of length n."""
    raw = np.frombuffer(mask.to_bytes((n + 7) // 8 or 1, "little"), np.uint8)
    return np.unpackbits(raw, bitorder="little", count=n).astype(bool)


def mask_cost(costs: np.ndarray, mask: int) -> float:
    """Sum of costs over the nodes in `mask`."""
    if not mask:
        return 0.0
    return float(costs[mask_array(mask, len(costs))].sum())
