"""DAG analyses over a model graph, each a score per node (keyed by the node's first output name).

- topological_depth: hops from the graph inputs (0 = reads only inputs/weights). Radius of the
  hierarchical depth embedding (lorentz.py) and the column of a node in drawings (draw.py).
- causal_cone: which graph inputs a node depends on and which graph outputs it can affect;
  `affected_outputs` is what must be re-validated after some nodes changed (runner.Pipeline.revalidate).
- critical_path: earliest start, bottom level (longest cost-weighted path to an exit, itself
  included) and slack of every node; `schedule_order` is the list-scheduling order by bottom level
  (the pipeline runner's stage priority), and the critical path length bounds a stage's latency.
- parallel_branches: sync points (nodes ordered against every other node) split the graph into
  segments; inside a segment, weakly connected groups are independent branches that may run
  concurrently (the runner runs independent stages of one call on separate threads).

The min-cut gating score lives in mincut.py, the temporal score in btsp.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dag import Dag, members, popcount


def topological_depth(dag: Dag) -> dict[str, int]:
    depth = [0] * dag.n
    for i in range(dag.n):
        depth[i] = 1 + max((depth[p] for p in dag.preds[i]), default=-1)
    return dict(zip(dag.keys, depth, strict=True))


# ---- causal cone ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cone:
    inputs: frozenset[str]  # graph inputs this node depends on
    outputs: frozenset[str]  # graph outputs this node can affect

    def score(self, n_outputs: int) -> float:
        """Share of the graph outputs this node can affect."""
        return len(self.outputs) / n_outputs if n_outputs else 0.0


def causal_cone(dag: Dag) -> dict[str, Cone]:
    g = dag.graph
    ins: list[set[str]] = [set() for _ in range(dag.n)]
    for i, nd in enumerate(g.nodes):
        ins[i].update(v for v in nd.inputs if v in g.inputs)
        for p in dag.preds[i]:
            ins[i] |= ins[p]
    outs: list[set[str]] = [set() for _ in range(dag.n)]
    for o, i in dag.output_nodes.items():
        outs[i].add(o)
    for i in range(dag.n - 1, -1, -1):
        for s in dag.succs[i]:
            outs[i] |= outs[s]
    return {k: Cone(frozenset(ins[i]), frozenset(outs[i])) for i, k in enumerate(dag.keys)}


def affected_outputs(dag: Dag, changed: list[str] | set[str]) -> list[str]:
    """Graph outputs that nodes `changed` (keys) can affect, in graph output order."""
    cones = causal_cone(dag)
    unknown = sorted(set(changed) - set(cones))
    if unknown:
        raise KeyError(f"unknown nodes {unknown[:5]}")
    hit: set[str] = set()
    for k in changed:
        hit |= cones[k].outputs
    return [o for o in dict.fromkeys(dag.graph.outputs) if o in hit]


# ---- critical path -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CriticalPath:
    earliest_start: dict[str, float]  # longest path from an entry to the node, excluding its own cost
    bottom_level: dict[str, float]  # longest path from the node to an exit, its own cost included
    slack: dict[str, float]  # how much the node could be delayed without lengthening the path
    length: float  # the critical path: the latency of the graph with unlimited threads
    path: tuple[str, ...]  # one critical path, entry to exit


def critical_path(dag: Dag, costs: np.ndarray) -> CriticalPath:
    c = np.asarray(costs, dtype=np.float64)
    est = [0.0] * dag.n
    for i in range(dag.n):
        est[i] = max((est[p] + c[p] for p in dag.preds[i]), default=0.0)
    bl = [0.0] * dag.n
    for i in range(dag.n - 1, -1, -1):
        bl[i] = c[i] + max((bl[s] for s in dag.succs[i]), default=0.0)
    length = max((est[i] + bl[i] for i in range(dag.n)), default=0.0)
    tol = 1e-9 * max(1.0, length)
    slack = [length - est[i] - bl[i] for i in range(dag.n)]
    path: list[int] = []
    cur = next((i for i in range(dag.n) if not dag.preds[i] and slack[i] <= tol), None)
    while cur is not None:
        path.append(cur)
        cur = next((s for s in sorted(dag.succs[cur]) if slack[s] <= tol and
                    abs(est[s] - est[cur] - c[cur]) <= tol), None)
    k = dag.keys
    return CriticalPath(dict(zip(k, est, strict=True)), dict(zip(k, bl, strict=True)),
                        dict(zip(k, slack, strict=True)), length, tuple(k[i] for i in path))


def schedule_order(dag: Dag, costs: np.ndarray) -> list[str]:
    """A topological order that always runs the ready node with the longest bottom level first
    (HLFET list scheduling): the critical path is never left waiting."""
    bl = critical_path(dag, costs).bottom_level
    waiting = [len(p) for p in dag.preds]
    ready = [i for i in range(dag.n) if waiting[i] == 0]
    order = []
    while ready:
        ready.sort(key=lambda i: (-bl[dag.keys[i]], i))
        i = ready.pop(0)
        order.append(dag.keys[i])
        for s in dag.succs[i]:
            waiting[s] -= 1
            if waiting[s] == 0:
                ready.append(s)
    return order


# ---- parallel branches ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Branches:
    concurrency: dict[str, int]  # nodes that may run at the same time as this one (incomparable)
    segment: dict[str, int]  # index of the segment between two sync points (-1 for a sync point)
    branch: dict[str, int]  # index of the independent branch within its segment (-1 for sync points)
    groups: tuple[tuple[tuple[str, ...], ...], ...]  # per segment, its branches' nodes

    @property
    def sync_points(self) -> list[str]:
        return [k for k, s in self.segment.items() if s == -1]


def parallel_branches(dag: Dag) -> Branches:
    n, full = dag.n, dag.all
    comparable = [dag.anc[i] | dag.desc[i] | 1 << i for i in range(n)]
    conc = [popcount(full & ~comparable[i]) for i in range(n)]
    segment, branch = [-1] * n, [-1] * n
    groups: list[tuple[tuple[str, ...], ...]] = []
    seg, pending = 0, []

    def close_segment() -> None:
        nonlocal seg, pending
        if not pending:
            return
        mask = sum(1 << i for i in pending)
        comps: list[list[int]] = []
        seen = 0
        for i in pending:
            if seen >> i & 1:
                continue
            comp, todo = [], [i]
            seen |= 1 << i
            while todo:
                u = todo.pop()
                comp.append(u)
                for w in (*dag.preds[u], *dag.succs[u]):
                    if mask >> w & 1 and not seen >> w & 1:
                        seen |= 1 << w
                        todo.append(w)
            comps.append(sorted(comp))
        comps.sort()
        for b, comp in enumerate(comps):
            for u in comp:
                segment[u], branch[u] = seg, b
        groups.append(tuple(tuple(dag.keys[u] for u in comp) for comp in comps))
        seg, pending = seg + 1, []

    for i in range(n):  # sync points are ordered against everything, so graph order visits segments
        if conc[i] == 0:
            close_segment()
        else:
            pending.append(i)
    close_segment()
    k = dag.keys
    return Branches(dict(zip(k, conc, strict=True)), dict(zip(k, segment, strict=True)),
                    dict(zip(k, branch, strict=True)), tuple(groups))


def nodes_of(dag: Dag, mask: int) -> list[str]:
    return [dag.keys[i] for i in members(mask)]
