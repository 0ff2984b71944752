"""Minimum boundary cuts of a model graph, solved as max-flow / min-cut with networkx.

A stage boundary is a *downset* D of the DAG (every ancestor of a node in D is in D): the nodes that
run before it. Its cost is the bytes of the values produced in D (or graph inputs) that some node
outside D still reads — each value counted once however many later nodes read it.

The flow network (source side = D):
- value v produced by p and read by several nodes: an extra vertex a_v, edge p -> a_v with
  capacity bytes(v), and uncapacitated edges a_v -> c for each reader c. If any reader is outside D,
  a_v must be outside too, so the bytes are paid once; if all readers are inside, nothing is paid.
  A value with one reader is just an edge p -> c of capacity bytes(v).
- closure: for each dependency p -> c an uncapacitated edge c -> p (c inside forces p inside).
- constraints: nodes forced inside hang off the source, nodes forced outside off the sink (they are
  contracted into s / t, so a search deep in a branch-and-bound solves only the free part).
- tied nodes (e.g. users of one weight when sharing is forbidden): uncapacitated edges both ways.

`gates()` is the per-node min-cut gating score: the cheapest boundary placed right after node v
(v and its ancestors inside, its descendants outside). Every downset's cut is >= the gate of each of
its maximal nodes, so gates give the partitioner exact lower bounds for a range of boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from .dag import Dag, members

S, T = "s", "t"


@dataclass
class MinCut:
    """Constrained min cuts of one Dag's boundaries, memoised on the constraints (bytes never change
    for a given Dag, so a result stays valid across cost updates)."""

    dag: Dag
    tied: tuple[tuple[int, int], ...] = ()  # pairs that must be on the same side of every boundary
    calls: int = 0  # max-flow problems actually solved (memo misses), for reports and benchmarks
    _memo: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict, repr=False)
    _values: list[tuple[int, int | None, tuple[int, ...]]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        d = self.dag
        for v in d.traffic_values():  # (bytes, producer or None for an input, readers)
            self._values.append((d.value_bytes[v], d.producer.get(v), d.consumers[v]))
        # a tied pair closes over ancestors/descendants: tie i~j means i in D <=> j in D
        self._tie_in: dict[int, int] = {}
        for a, b in self.tied:
            self._tie_in[a] = self._tie_in.get(a, 0) | 1 << b
            self._tie_in[b] = self._tie_in.get(b, 0) | 1 << a

    # ---- closures under the DAG order and the ties --------------------------------------------------
    def close_in(self, mask: int, base: int = 0) -> int:
        """Smallest set containing `mask` and `base` that is a downset and respects ties; `base` must
        already be closed (only the nodes of `mask` outside it are expanded)."""
        mask &= ~base
        if not self._tie_in and mask and not mask & (mask - 1):  # one node, no ties: its ancestors
            i = mask.bit_length() - 1
            return base | self.dag.anc[i] | mask
        d, out, todo = self.dag, base | mask, mask
        while todo:
            add = 0
            for i in members(todo):
                add |= d.anc[i] | self._tie_in.get(i, 0)
            todo = add & ~out
            out |= add
        return out

    def close_out(self, mask: int, base: int = 0) -> int:
        """Smallest set containing `mask` and `base` closed under descendants and ties (what must stay
        outside); `base` must already be closed."""
        mask &= ~base
        if not self._tie_in and mask and not mask & (mask - 1):
            i = mask.bit_length() - 1
            return base | self.dag.desc[i] | mask
        d, out, todo = self.dag, base | mask, mask
        while todo:
            add = 0
            for i in members(todo):
                add |= d.desc[i] | self._tie_in.get(i, 0)
            todo = add & ~out
            out |= add
        return out

    # ---- the min cut --------------------------------------------------------------------------------
    def solve(self, inside: int, outside: int) -> tuple[int, int]:
        """(min cut bytes, the minimising downset) over downsets D with inside ⊆ D, D ∩ outside = ∅.
        Both arguments must already be closed (close_in / close_out) and disjoint."""
        key = (inside, outside)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        free = self.dag.all & ~(inside | outside)
        res = self._flow(inside, outside, free) if free else (self.dag.cut_bytes(inside), inside)
        self._memo[key] = res
        return res

    def _flow(self, inside: int, outside: int, free: int) -> tuple[int, int]:
        self.calls += 1

        def side(i: int | None) -> str | int:
            if i is None or inside >> i & 1:
                return S
            return T if outside >> i & 1 else i

        g = nx.DiGraph()
        g.add_node(S)
        g.add_node(T)
        base = 0
        for k, (nbytes, p, readers) in enumerate(self._values):
            src = side(p)
            if src == T:
                continue  # produced outside: never crosses this boundary
            dst = {side(c) for c in readers} - {src}
            if not dst:
                continue
            if src == S and T in dst:
                base += nbytes  # an inside value read by a node forced outside: always paid
                continue
            if len(dst) == 1:
                (c,) = dst
                cap = g.get_edge_data(src, c, {}).get("capacity", 0)
                g.add_edge(src, c, capacity=cap + nbytes)
            else:
                a = ("v", k)
                g.add_edge(src, a, capacity=nbytes)
                for c in dst:
                    g.add_edge(a, c)  # no capacity attribute = infinite in networkx
        for c in members(free):
            for p in self.dag.preds[c]:
                if not inside >> p & 1:
                    g.add_edge(c, p)  # closure: c inside -> p inside
            for other in members(self._tie_in.get(c, 0)):
                g.add_edge(c, side(other))
                g.add_edge(side(other), c)
        value, (src_side, _) = nx.minimum_cut(g, S, T)
        chosen = inside
        for x in src_side:
            if isinstance(x, int):
                chosen |= 1 << x
        return base + int(value), chosen

    # ---- gating --------------------------------------------------------------------------------------
    def gate(self, i: int) -> tuple[int, int]:
        """(bytes, downset) of the cheapest boundary right after node i; (-1, 0) if ties make it
        impossible (a tied partner of i is a descendant of i) or i is a constant node."""
        if self.dag.constant >> i & 1:
            return -1, 0  # constant nodes sit before every boundary (see dag.py)
        inside = self.close_in(self.dag.constant, base=self.close_in(1 << i))
        outside = self.close_out(self.dag.desc[i], base=0 if self._tie_in else self.dag.desc[i])
        if inside & outside:
            return -1, 0
        return self.solve(inside, outside)

    def gates(self) -> list[tuple[int, int]]:
        return [self.gate(i) for i in range(self.dag.n)]
