"""Branch and bound over the downsets of a DAG whose compute cost lies in a window [lo, hi].

Each search state fixes a set A of nodes inside the boundary and a set B outside it (A a downset, B
closed under descendants). Its lower bound is the constrained min cut (mincut.MinCut.solve, a
max-flow): no completion of the state has a cheaper cut. A state is pruned when that bound exceeds
the threshold, or when the window is out of reach (cost(A) > hi, or everything not in B costs < lo).
Otherwise it branches on its lowest-numbered free node x (whose predecessors are all in A, because
the node order is topological): x inside, or x and its descendants outside. A child whose
constraints the parent's minimising downset already satisfies inherits the parent's bound without a
new max-flow, so a search mostly runs flows where it departs from the cheapest cut.

`minimum(lo, hi)` finds the cheapest boundary in the window; `enumerate(lo, hi, tau)` lists every
boundary in the window whose cut is <= tau (exhaustively: nothing with a cut <= tau is missed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PartitionError
from .dag import mask_array
from .mincut import MinCut


@dataclass(frozen=True)
class Boundary:
    """One candidate boundary: the nodes before it (a downset bitset), its cut bytes and its cost."""

    mask: int
    cut: int
    cost: float


class SearchBudgetExceeded(PartitionError):
    """The enumeration produced more candidates than its limit (a very wide graph or loose window)."""


class BoundarySearch:
    def __init__(self, mc: MinCut, costs: np.ndarray):
        self.mc, self.costs = mc, np.asarray(costs, dtype=np.float64)
        self.n = mc.dag.n
        self.total = float(self.costs.sum())
        self.states = 0  # search states visited, for reports
        self._recompute_closure_costs()

    def _recompute_closure_costs(self) -> None:
        """Cost of each node's closure inside (ancestors), outside (descendants) and below it, as
        three matrix-vector products over closure matrices built once (n x n booleans)."""
        if getattr(self, "_closures", None) is None:
            mc, n = self.mc, self.n
            self._closures = tuple(
                np.stack([mask_array(m, n) for m in masks]) if n else np.zeros((0, 0), bool)
                for masks in ([mc.close_in(1 << i) for i in range(n)], [mc.close_out(1 << i) for i in range(n)],
                              [mc.close_out(d, base=0 if mc.tied else d) for d in mc.dag.desc]))
        c = self.costs
        self._in_cost, self._out_cost, self._below_cost = (m @ c if len(c) else np.zeros(0)
                                                           for m in self._closures)

    def update_costs(self, costs: np.ndarray) -> None:
        """New node costs. Without tied nodes, closure costs change only along the changed nodes'
        ancestors and descendants: O(changed · n / 8) instead of O(n² / 8)."""
        new = np.asarray(costs, dtype=np.float64)
        delta = new - self.costs
        changed = np.flatnonzero(delta)
        self.costs, self.total = new, float(new.sum())
        if self.mc.tied or len(changed) * 16 > self.n:
            self._recompute_closure_costs()
            return
        d = self.mc.dag
        for u in changed.tolist():
            du = delta[u]
            down = mask_array(d.desc[u], self.n)  # nodes whose ancestor closure holds u
            up = mask_array(d.anc[u], self.n)
            self._in_cost[down] += du
            self._in_cost[u] += du
            self._out_cost[up] += du
            self._out_cost[u] += du
            self._below_cost[up] += du

    def window_lower_bound(self, lo: float, hi: float, gates: np.ndarray) -> float:
        """A lower bound on the cut of any boundary with cost in [lo, hi], from the per-node gates
        (mincut.MinCut.gates): such a boundary's maximal nodes can each be its last node."""
        eps = 1e-9 * max(1.0, self.total)
        ok = (self._in_cost <= hi + eps) & (self.total - self._below_cost >= lo - eps) & (gates >= 0)
        return float(gates[ok].min()) if ok.any() else float("inf")

    def _cost(self, mask: int) -> float:
        return float(self.costs[mask_array(mask, self.n)].sum()) if mask else 0.0

    def root(self, lo: float, hi: float) -> tuple[int, int] | None:
        """Nodes forced inside / outside by the window alone (closed), or None if they conflict."""
        eps = 1e-9 * max(1.0, self.total)
        must_in = np.flatnonzero(self.total - self._out_cost < lo - eps)  # leaving it out costs too much
        must_out = np.flatnonzero(self._in_cost > hi + eps)  # taking it in costs too much
        a = self.mc.close_in(sum(1 << int(i) for i in must_in) | self.mc.dag.constant)
        b = self.mc.close_out(sum(1 << int(i) for i in must_out))
        return None if a & b else (a, b)

    def _walk(self, lo: float, hi: float, tau: float, limit: int, first_only_min: bool) -> list[Boundary]:
        eps = 1e-9 * max(1.0, self.total)
        start = self.root(lo, hi)
        if start is None:
            return []
        a0, b0 = start
        found: list[Boundary] = []
        best = float("inf")
        stack = [(a0, b0, self.mc.solve(a0, b0))]
        full = self.mc.dag.all
        while stack:
            a, b, (bound, dstar) = stack.pop()
            self.states += 1
            cost_a, cost_b = self._cost(a), self._cost(b)
            if cost_a > hi + eps or self.total - cost_b < lo - eps:
                continue
            limit_cut = min(tau, best) if first_only_min else tau
            if bound > limit_cut or (first_only_min and bound >= best):
                continue
            if first_only_min:  # the state's minimiser is in the window: nothing below beats it
                cost_d = self._cost(dstar)
                if lo - eps <= cost_d <= hi + eps:
                    found.append(Boundary(dstar, bound, cost_d))
                    best = bound
                    continue
            free = full & ~(a | b)
            if not free:
                found.append(Boundary(a, bound, cost_a))
                if first_only_min:
                    best = min(best, bound)
                elif len(found) > limit:
                    raise SearchBudgetExceeded(
                        f"more than {limit} candidate boundaries in the cost window [{lo:.4g}, {hi:.4g}] "
                        f"with cut <= {tau:,.0f} bytes; raise max_candidates or tighten the tolerance"
                    )
                continue
            x = (free & -free).bit_length() - 1
            children = []
            a1 = self.mc.close_in(1 << x, base=a)
            if not a1 & b:
                children.append((a1, b))
            b1 = self.mc.close_out(1 << x, base=b)
            if not b1 & a:
                children.append((a, b1))
            # explore the child that agrees with the parent's minimiser last, so it is popped first
            children.sort(key=lambda ab: (ab[0] & ~dstar == 0 and ab[1] & dstar == 0))
            for ca, cb in children:
                inherit = ca & ~dstar == 0 and cb & dstar == 0
                stack.append((ca, cb, (bound, dstar) if inherit else self.mc.solve(ca, cb)))
        return found

    def minimum(self, lo: float, hi: float) -> Boundary | None:
        """The cheapest boundary whose cost is in [lo, hi] (None if no downset has such a cost)."""
        found = self._walk(lo, hi, float("inf"), 0, True)
        return min(found, key=lambda c: (c.cut, c.mask), default=None)

    def enumerate(self, lo: float, hi: float, tau: float, limit: int = 20000) -> list[Boundary]:
        """Every boundary with cost in [lo, hi] and cut <= tau."""
        return sorted(self._walk(lo, hi, tau, limit, False), key=lambda c: (c.cut, c.mask))
