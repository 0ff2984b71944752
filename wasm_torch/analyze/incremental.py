"""Incremental repartitioning when op costs change, and the tension it publishes.

A `PartitionSession` owns one graph's partitioner and two partitions: `deployed` (what the compiled
stages implement) and `best` (the optimum under the current costs). `update(costs)`:

1. Fast path, no max-flow at all: cut bytes do not depend on costs, so the per-node min-cut gates
   (computed once per session) stay valid; only the closure costs move, updated along the changed
   nodes' ancestors and descendants. If the previous best chain still meets every stage window and
   each boundary's cut equals the gate lower bound of its (new) window, it is still optimal.
2. Otherwise a full solve that reuses every max-flow already computed (they are memoised on the
   constraints, which do not involve costs), so only the new parts of the search run flows.
3. When the symbol bindings change (a different sequence length), bytes change: the session
   rebuilds the graph index and solves from scratch.

After every update the deployed partition is re-evaluated and a `TensionEvent` is published; the
subscribers in tension.py decide whether to deploy `best` (repartition), drop cached partitions or
ask the autotuner for budget. The session never redeploys by itself.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping

import numpy as np

from ..compiler.ir.graph import Graph
from ..errors import PartitionError
from .dag import CostFn, Dag, members
from .events import EventBus, PartitionChanged, TensionEvent
from .partition import Partition, Partitioner, PartitionOptions, windows


def graph_fingerprint(g: Graph) -> str:
    """Structure only (ops, wiring, types), not weight values: equal graphs partition equally."""
    h = hashlib.sha256()
    for n in g.nodes:
        h.update(f"{n.op}|{','.join(n.inputs)}|{','.join(n.outputs)};".encode())
    for v in sorted(g.types):
        h.update(f"{v}:{g.types[v]};".encode())
    h.update(f"in={g.inputs};out={g.outputs}".encode())
    return h.hexdigest()[:16]


def partition_id(p: Partition, dag: Dag) -> str:
    text = "|".join(",".join(dag.keys[i] for i in members(s.mask)) for s in p.stages)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class PartitionSession:
    def __init__(self, graph: Graph, cost: CostFn | np.ndarray, options: PartitionOptions, *,
                 bus: EventBus | None = None, bindings: Mapping[str, int] | None = None):
        self.graph, self.options = graph, options
        self.bus = bus or EventBus()
        self.fingerprint = graph_fingerprint(graph)
        self.bindings = dict(bindings or {})
        self.partitioner = Partitioner(Dag.of(graph, self.bindings or None), cost, options)
        self._gates: np.ndarray | None = None
        self.deployed: Partition | None = None
        self.best: Partition | None = None
        self.last_update: dict[str, float | str] = {}

    @property
    def dag(self) -> Dag:
        return self.partitioner.dag

    def gates(self) -> np.ndarray:
        """Per-node min-cut gate bytes (-1 where ties make a boundary after the node impossible)."""
        if self._gates is None:
            self._gates = np.array([g for g, _ in self.partitioner.mc.gates()], dtype=np.float64)
        return self._gates

    # ---- solving --------------------------------------------------------------------------------
    def solve(self) -> Partition:
        """Solve from the current state and deploy the result (the session's first partition)."""
        self.best = self.partitioner.solve()
        self.deploy(self.best, "initial partition")
        return self.best

    def update(self, costs: CostFn | np.ndarray | Mapping[str, float] | None = None, *,
               bindings: Mapping[str, int] | None = None) -> Partition:
        """New costs (all of them, or {node key: cost} for the ones that changed) and/or bindings;
        returns the new best partition and publishes the deployed one's tension."""
        t0 = time.perf_counter()
        new_costs = self._resolve_costs(costs)
        how = "fast"
        if bindings is not None and dict(bindings) != self.bindings:
            self.bindings = dict(bindings)
            c = new_costs if new_costs is not None else self.partitioner.costs
            self.partitioner = Partitioner(Dag.of(self.graph, self.bindings or None), c, self.options)
            self._gates = None
            self.best = self.partitioner.solve()
            how = "rebuild"
        else:
            if new_costs is not None:
                self.partitioner.set_costs(new_costs)
            kept = self._certified_previous()
            if kept is not None:
                self.best = kept
            else:
                self.best = self.partitioner.solve()
                how = "resolve"
        self.last_update = {"mode": how, "seconds": time.perf_counter() - t0}
        self.publish_tension()
        return self.best

    def _resolve_costs(self, costs: CostFn | np.ndarray | Mapping[str, float] | None) -> np.ndarray | None:
        if costs is None:
            return None
        if callable(costs):
            return self.dag.costs(costs)
        if isinstance(costs, Mapping):
            index = self.dag.key_index()
            unknown = sorted(set(costs) - set(index))
            if unknown:
                raise PartitionError(f"cost update names unknown nodes {unknown[:5]}")
            new = self.partitioner.costs.copy()
            for k, v in costs.items():
                new[index[k]] = float(v)
            return new
        return np.asarray(costs, dtype=np.float64)

    def _certified_previous(self) -> Partition | None:
        """The previous best chain, if it is still feasible and provably optimal by the gate bounds."""
        if self.best is None:
            return None
        p = self.partitioner
        bounds = self.best.boundaries
        if p.violations(bounds):
            return None
        gates = self.gates()
        wins = windows(float(p.costs.sum()), self.options.stages, self.options.tolerance)
        lb = sum(p.search.window_lower_bound(lo, hi, gates) for lo, hi in wins)
        cut = sum(self.dag.cut_bytes(b) for b in bounds) if bounds else 0
        if not np.isfinite(lb) or cut > lb:
            return None
        return p.build(bounds, int(lb), True, seconds=0.0, mode="certified by gates")

    # ---- deploying and tension ------------------------------------------------------------------
    def deploy(self, p: Partition, reason: str) -> None:
        old = self.deployed
        if old is not None and partition_id(old, self.dag) == partition_id(p, self.dag):
            self.deployed = p
            return
        changed = tuple(j for j, s in enumerate(p.stages)
                        if old is None or j >= len(old.stages) or old.stages[j].keys != s.keys)
        self.deployed = p
        self.bus.publish(PartitionChanged(
            graph=self.fingerprint, old=None if old is None else partition_id(old, self.dag),
            new=partition_id(p, self.dag), changed_stages=changed, reason=reason, partition=p))

    def evaluate_deployed(self) -> tuple[Partition, list[str]]:
        """The deployed boundaries under the current costs and bytes, and what they now violate."""
        if self.deployed is None:
            raise PartitionError("nothing deployed yet: call solve() first")
        index = self.dag.key_index()
        bounds, acc = [], self.dag.constant
        for s in self.deployed.stages[:-1]:  # rebuild masks by key: the Dag may have been rebuilt
            acc |= sum(1 << index[k] for k in s.keys)
            bounds.append(acc)
        bounds_t = tuple(bounds)
        problems = self.partitioner.violations(bounds_t)
        return self.partitioner.build(bounds_t, self.deployed.lower_bound, False), problems

    def boundary_ops(self, p: Partition) -> tuple[str, ...]:
        """Nodes next to a boundary: producers of crossing values and the nodes reading them."""
        d = self.dag
        index = d.key_index()
        out: dict[str, None] = {}
        acc = d.constant
        for s in p.stages[:-1]:
            acc |= sum(1 << index[k] for k in s.keys)
            for v in d.cut_values(acc):
                if v in d.producer:
                    out[d.keys[d.producer[v]]] = None
                for c in d.consumers[v]:
                    if not acc >> c & 1:
                        out[d.keys[c]] = None
        return tuple(out)

    def publish_tension(self) -> TensionEvent:
        now, problems = self.evaluate_deployed()
        best = self.best or now
        ev = TensionEvent(
            graph=self.fingerprint, partition=partition_id(now, self.dag), tension=now.tension,
            crossing_bytes=now.crossing_bytes, total_traffic=now.total_traffic,
            best_tension=best.tension, feasible=not problems, imbalance=now.imbalance,
            boundary_ops=self.boundary_ops(now))
        self.bus.publish(ev)
        return ev
