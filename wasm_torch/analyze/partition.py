"""Min-cut k-stage pipeline partitioning of a model graph.

A partition into k stages is a chain of boundaries ∅ = D0 ⊂ D1 ⊂ ... ⊂ Dk = all nodes, each Dj a
downset (closed under ancestors): stage j runs the nodes of Dj \\ Dj-1. Equivalently, the stages are
contiguous in *some* topological order of the graph (not necessarily the order the nodes are listed).

Objective: the bytes crossing stage boundaries, Σ_j cut(Dj), where cut(D) counts each value produced
in D (or a graph input) and read outside D once — what a chain of devices that each talk only to the
next would send. Constraints: each stage's compute cost within ±tolerance of total/k; optionally each
stage's memory (weights it uses + its input and output tensors) <= memory_cap; with
shared_weights="forbid", all readers of a weight stay in one stage (default "duplicate": a weight read
in two stages is stored in both, and the partition reports it).

Algorithm (exact, with a certificate):
1. The stage windows imply a cost window for every boundary Dj (j·total/k within the accumulated
   tolerance, intersected with what the remaining stages can hold).
2. mj = the cheapest boundary in window j (search.BoundarySearch.minimum: branch and bound over
   max-flow lower bounds). Σ mj is a lower bound on any partition.
3. Enumerate every boundary in window j with cut <= mj + slack (slack starts at 0), then pick the
   best chain with a dynamic program over those candidates (nesting, stage windows, memory caps).
4. If the best chain costs C <= Σ mj + slack, it is optimal: any cheaper chain has every boundary
   within its candidate list. Otherwise set slack = C - Σ mj and repeat once (now it is certain).
   With no feasible chain, the slack doubles until every boundary of every window is listed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..compiler.ir.graph import Graph
from ..errors import PartitionError
from .dag import CostFn, Dag, mask_cost, members
from .mincut import MinCut
from .search import Boundary, BoundarySearch, SearchBudgetExceeded

SharedWeights = Literal["duplicate", "forbid"]


@dataclass(frozen=True)
class PartitionOptions:
    stages: int
    tolerance: float = 0.1  # each stage's cost within ±tolerance·total/stages
    memory_cap: int | None = None  # bytes per stage: weights used + input and output tensors
    shared_weights: SharedWeights = "duplicate"
    max_candidates: int = 20000  # per boundary window, before the search gives up (wide graphs)

    def __post_init__(self) -> None:
        if not isinstance(self.stages, int) or isinstance(self.stages, bool) or self.stages < 1:
            raise PartitionError(f"stages must be an integer >= 1, got {self.stages!r}")
        if not (isinstance(self.tolerance, int | float) and 0 <= self.tolerance <= 10):
            raise PartitionError(f"tolerance must be a number in [0, 10] (a fraction of total/stages), "
                                 f"got {self.tolerance!r}")
        if self.memory_cap is not None and (not isinstance(self.memory_cap, int) or self.memory_cap <= 0):
            raise PartitionError(f"memory_cap must be a positive number of bytes, got {self.memory_cap!r}")
        if self.shared_weights not in ("duplicate", "forbid"):
            raise PartitionError(f"shared_weights must be 'duplicate' or 'forbid', got {self.shared_weights!r}")
        if self.max_candidates < 1:
            raise PartitionError("max_candidates must be >= 1")


@dataclass(frozen=True)
class Stage:
    index: int
    mask: int  # bitset of the stage's nodes
    keys: tuple[str, ...]  # its nodes (first output names), in graph order
    cost: float
    recomputed: tuple[str, ...]  # constant nodes of other stages it recomputes (Dag.recomputed)
    inputs: tuple[str, ...]  # values it reads that come from the caller or earlier stages
    outputs: tuple[str, ...]  # values it makes that later stages read or that are graph outputs
    weights: tuple[str, ...]  # constants it reads
    weight_bytes: int
    io_bytes: int  # its inputs + outputs

    @property
    def memory_bytes(self) -> int:
        return self.weight_bytes + self.io_bytes


@dataclass(frozen=True)
class Partition:
    options: PartitionOptions
    stages: tuple[Stage, ...]
    boundaries: tuple[int, ...]  # D1..Dk-1 as bitsets
    boundary_bytes: tuple[int, ...]
    crossing_bytes: int
    lower_bound: int  # Σ of each boundary window's cheapest cut
    optimal: bool  # crossing_bytes is proven minimal under the constraints
    total_cost: float
    total_traffic: int  # bytes of every value some node reads (graph inputs included)
    duplicated_weights: dict[str, tuple[int, ...]]  # weight -> stages that read it (when > 1)
    stats: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def tension(self) -> float:
        """Cut weight relative to total traffic: the share of all activation bytes that cross."""
        return self.crossing_bytes / self.total_traffic if self.total_traffic else 0.0

    @property
    def imbalance(self) -> float:
        """max |stage cost − total/k| / (total/k)."""
        target = self.total_cost / len(self.stages)
        return max(abs(s.cost - target) for s in self.stages) / target if target else 0.0

    def stage_of(self) -> dict[str, int]:
        """node key -> stage index."""
        return {k: s.index for s in self.stages for k in s.keys}

    def to_json(self) -> dict[str, Any]:
        return {
            "stages": len(self.stages),
            "tolerance": self.options.tolerance,
            "memory_cap": self.options.memory_cap,
            "shared_weights": self.options.shared_weights,
            "crossing_bytes": self.crossing_bytes,
            "boundary_bytes": list(self.boundary_bytes),
            "lower_bound_bytes": self.lower_bound,
            "optimal": self.optimal,
            "total_traffic_bytes": self.total_traffic,
            "tension": round(self.tension, 6),
            "imbalance": round(self.imbalance, 6),
            "stage_cost": [s.cost for s in self.stages],
            "stage_weight_bytes": [s.weight_bytes for s in self.stages],
            "duplicated_weights": {k: list(v) for k, v in self.duplicated_weights.items()},
            "stats": self.stats,
        }


def tied_pairs(dag: Dag, shared_weights: SharedWeights) -> tuple[tuple[int, int], ...]:
    """With 'forbid': readers of one weight (more than one element; scalars are inlined in code) tied."""
    if shared_weights == "duplicate":
        return ()
    pairs = []
    for c, users in dag.const_users.items():
        if dag.graph.consts[c].size > 1:
            us = list(members(users))
            pairs += [(us[i], us[i + 1]) for i in range(len(us) - 1)]
    return tuple(pairs)


def balance_costs(dag: Dag, costs: np.ndarray) -> np.ndarray:
    """The costs the balance uses: constant nodes (recomputed wherever they are read) count 0."""
    out = np.array(costs, dtype=np.float64)
    for i in members(dag.constant):
        out[i] = 0.0
    return out


def windows(total: float, k: int, tol: float) -> list[tuple[float, float]]:
    """Cost window of each boundary D1..Dk-1 implied by per-stage windows [(1−tol)t, (1+tol)t]."""
    t = total / k
    lo_s, hi_s = (1 - tol) * t, (1 + tol) * t
    out = []
    for j in range(1, k):
        lo = max(j * lo_s, total - (k - j) * hi_s)
        hi = min(j * hi_s, total - (k - j) * lo_s)
        out.append((lo, hi))
    return out


class Partitioner:
    """Partitions one graph; keeps its min-cut memo, so re-solving after cost changes is cheaper
    (incremental.PartitionSession builds on this)."""

    def __init__(self, graph: Graph | Dag, cost: CostFn | np.ndarray, options: PartitionOptions):
        self.dag = graph if isinstance(graph, Dag) else Dag.of(graph)
        self.options = options
        movable = self.dag.n - self.dag.constant.bit_count()
        if options.stages > max(1, movable):
            raise PartitionError(f"cannot split {movable} nodes into {options.stages} non-empty stages")
        self.mc = MinCut(self.dag, tied_pairs(self.dag, options.shared_weights))
        self.search: BoundarySearch | None = None
        self.set_costs(cost)

    def set_costs(self, cost: CostFn | np.ndarray) -> None:
        costs = self.dag.costs(cost) if callable(cost) else np.array(cost, dtype=np.float64)
        if costs.shape != (self.dag.n,) or not np.all(np.isfinite(costs)) or np.any(costs < 0):
            raise PartitionError(f"costs must be {self.dag.n} finite numbers >= 0")
        costs = balance_costs(self.dag, costs)
        if self.dag.n and costs.sum() <= 0:
            raise PartitionError("every node costs 0: nothing to balance (give a cost model)")
        self.costs = costs
        if getattr(self, "search", None) is None:
            self.search = BoundarySearch(self.mc, costs)
        else:
            self.search.update_costs(costs)

    # ---- the solve ------------------------------------------------------------------------------
    def solve(self) -> Partition:
        t0 = time.perf_counter()
        flows0, states0 = self.mc.calls, self.search.states
        k, tol = self.options.stages, self.options.tolerance
        total = float(self.costs.sum())
        if k == 1:
            return self._build((), 0, True, t0, flows0, states0, 0)
        wins = windows(total, k, tol)
        mins: list[Boundary] = []
        for j, (lo, hi) in enumerate(wins, 1):
            m = self.search.minimum(lo, hi)
            if m is None:
                raise PartitionError(
                    f"no boundary after stage {j} of {k} has a cost in [{lo:.4g}, {hi:.4g}] "
                    f"(total {total:.4g}, tolerance {tol}): some single node is too big to balance "
                    f"{k} stages within ±{tol:.0%}; raise tolerance or use fewer stages")
            mins.append(m)
        lb = sum(m.cut for m in mins)
        slack, best, candidates = 0, None, 0
        cap = self.dag.total_traffic()
        smallest = min((b for b in self.dag.value_bytes.values() if b > 0), default=1)
        while True:
            try:
                cands = [self.search.enumerate(lo, hi, m.cut + slack, self.options.max_candidates)
                         for (lo, hi), m in zip(wins, mins, strict=True)]
            except SearchBudgetExceeded:
                if best is None:
                    raise
                return self._build(best[1], lb, False, t0, flows0, states0, candidates)
            candidates = sum(len(c) for c in cands)
            found = self._chain(cands, total)
            if found is not None:
                best = found
                gap = found[0] - lb
                if gap <= slack:
                    return self._build(found[1], lb, True, t0, flows0, states0, candidates)
                slack = gap
                continue
            if all(m.cut + slack >= cap for m in mins):
                raise PartitionError(self._infeasible(total, k, tol))
            slack = min(cap, max(2 * slack, smallest))

    def _infeasible(self, total: float, k: int, tol: float) -> str:
        cap = self.options.memory_cap
        what = f"each stage's cost within ±{tol:.0%} of {total / k:.4g}"
        if cap is not None:
            what += f" and each stage's memory <= {cap:,} bytes"
        if self.options.shared_weights == "forbid":
            what += " with every weight's readers in one stage"
        return (f"no split of this graph into {k} contiguous stages keeps {what}; "
                "raise tolerance or memory_cap, allow shared weights to be duplicated, or use fewer stages")

    def _chain(self, cands: list[list[Boundary]], total: float) -> tuple[int, tuple[int, ...]] | None:
        """Dynamic program over candidate boundaries: the cheapest feasible chain (cut, then squared
        imbalance), or None."""
        k, tol, cap = self.options.stages, self.options.tolerance, self.options.memory_cap
        t = total / k
        eps = 1e-9 * max(1.0, total)
        lo_s, hi_s = (1 - tol) * t - eps, (1 + tol) * t + eps
        layers = [[Boundary(0, 0, 0.0)], *cands, [Boundary(self.dag.all, 0, total)]]
        best: list[dict[int, tuple[tuple[int, float], int | None]]] = [{0: ((0, 0.0), None)}]
        for j in range(1, k + 1):
            cur: dict[int, tuple[tuple[int, float], int | None]] = {}
            prev = {b.mask: b for b in layers[j - 1]}
            for q in layers[j]:
                for pm, (score, _) in best[j - 1].items():
                    p = prev[pm]
                    if pm & ~q.mask or not q.mask & ~pm & ~self.dag.constant:
                        continue
                    c = q.cost - p.cost
                    if not lo_s <= c <= hi_s:
                        continue
                    if cap is not None and self._memory(pm, q.mask) > cap:
                        continue
                    s = (score[0] + q.cut, score[1] + ((c - t) / t) ** 2)
                    if q.mask not in cur or s < cur[q.mask][0]:
                        cur[q.mask] = (s, pm)
            if not cur:
                return None
            best.append(cur)
        chain, m = [], self.dag.all
        for j in range(k, 0, -1):
            m = best[j][m][1]
            chain.append(m)
        bounds = tuple(reversed(chain[:-1]))
        return best[k][self.dag.all][0][0], bounds

    def violations(self, bounds: tuple[int, ...]) -> list[str]:
        """What the chain of boundaries breaks under the current costs (empty: it is feasible)."""
        k, tol, cap = self.options.stages, self.options.tolerance, self.options.memory_cap
        if len(bounds) != k - 1:
            return [f"{len(bounds)} boundaries for {k} stages"]
        total = float(self.costs.sum())
        t = total / k
        eps = 1e-9 * max(1.0, total)
        edges = (0, *bounds, self.dag.all)
        out = []
        for j in range(k):
            p, q = edges[j], edges[j + 1]
            if p & ~q or not q & ~p & ~self.dag.constant or not self.dag.is_downset(q) \
                    or q & self.dag.constant != self.dag.constant:
                out.append(f"stage {j}: boundaries are not a chain of downsets")
                continue
            c = mask_cost(self.costs, q & ~p)
            if abs(c - t) > tol * t + eps:
                out.append(f"stage {j}: cost {c:.4g} is {(c - t) / t:+.1%} from {t:.4g} (tolerance ±{tol:.0%})")
            if cap is not None and (m := self._memory(p, q)) > cap:
                out.append(f"stage {j}: memory {m:,} bytes > cap {cap:,}")
        for a, b in self.mc.tied:
            if any((q >> a & 1) != (q >> b & 1) for q in bounds):
                out.append(f"tied nodes {self.dag.keys[a]!r} and {self.dag.keys[b]!r} are split")
                break
        return out

    def build(self, bounds: tuple[int, ...], lower_bound: int, optimal: bool, **stats: Any) -> Partition:
        """The Partition for a chain of boundaries under the current costs."""
        p = self._build(bounds, lower_bound, optimal, time.perf_counter(), self.mc.calls, self.search.states, 0)
        p.stats.update(stats)
        return p

    # ---- stage facts ----------------------------------------------------------------------------
    def _io(self, before: int, mask: int, last: bool = False) -> tuple[list[str], list[str]]:
        d = self.dag
        mask &= ~d.constant
        ins, outs = [], []
        outputs = set(d.graph.outputs)
        for v, p, readers in d._traffic:
            if p >= 0 and mask >> p & 1:
                if v in outputs or readers & ~mask:
                    outs.append(v)
            elif readers & mask:
                ins.append(v)
        runs = mask | d.recomputed(mask, last=last)
        for v in d.graph.outputs:  # graph outputs nobody reads later, and those of constant nodes
            p = d.producer.get(v)
            if p is not None and v not in outs and (mask >> p & 1 or (last and runs >> p & 1)):
                outs.append(v)
        return ins, outs

    def _weights(self, mask: int, last: bool = False) -> list[str]:
        """Constants the stage reads, including those of the constant nodes it recomputes."""
        mask = (mask & ~self.dag.constant) | self.dag.recomputed(mask, last=last)
        return [c for c, users in self.dag.const_users.items() if users & mask]

    def _memory(self, before: int, upto: int) -> int:
        mask = upto & ~before
        last = upto == self.dag.all
        ins, outs = self._io(before, mask, last)
        vb = self.dag.value_bytes
        return sum(vb[c] for c in self._weights(mask, last)) + sum(vb[v] for v in (*ins, *outs))

    def _build(self, bounds: tuple[int, ...], lb: int, optimal: bool, t0: float, flows0: int,
               states0: int, candidates: int) -> Partition:
        d = self.dag
        edges = (0, *bounds, d.all)
        stages, readers_of = [], {}
        for j in range(len(edges) - 1):
            mask = edges[j + 1] & ~edges[j] & ~d.constant
            last = j == len(edges) - 2
            ins, outs = self._io(edges[j], mask, last)
            ws = self._weights(mask, last)
            for c in ws:
                readers_of.setdefault(c, []).append(j)
            stages.append(Stage(
                index=j, mask=mask, keys=tuple(d.keys[i] for i in members(mask)),
                recomputed=tuple(d.keys[i] for i in members(d.recomputed(mask, last=last))),
                cost=mask_cost(self.costs, mask), inputs=tuple(ins), outputs=tuple(outs), weights=tuple(ws),
                weight_bytes=sum(d.value_bytes[c] for c in ws),
                io_bytes=sum(d.value_bytes[v] for v in (*ins, *outs))))
        cuts = tuple(d.cut_bytes(b) for b in bounds)
        return Partition(
            options=self.options, stages=tuple(stages), boundaries=bounds, boundary_bytes=cuts,
            crossing_bytes=sum(cuts), lower_bound=lb, optimal=optimal, total_cost=float(self.costs.sum()),
            total_traffic=d.total_traffic(),
            duplicated_weights={c: tuple(s) for c, s in readers_of.items() if len(s) > 1},
            stats={"seconds": round(time.perf_counter() - t0, 6), "max_flows": self.mc.calls - flows0,
                   "search_states": self.search.states - states0, "candidates": candidates},
        )


def partition(graph: Graph | Dag, cost: CostFn | np.ndarray, stages: int, **options: Any) -> Partition:
    """Split `graph` into `stages` contiguous stages with the fewest crossing bytes (see module doc)."""
    return Partitioner(graph, cost, PartitionOptions(stages, **options)).solve()
