"""The readable reference for the partitioner: try every chain of boundaries (small graphs only).

Lists every downset of the DAG by brute force over all 2^n node subsets, then every chain
∅ ⊂ D1 ⊂ ... ⊂ Dk-1 ⊂ all of them, keeps the chains meeting the same constraints as
partition.Partitioner (stage cost windows, memory cap, tied weight readers) and returns the fewest
crossing bytes. No flows, no pruning: what the tests hold the min-cut search to.
"""

from __future__ import annotations

import numpy as np

from ..errors import PartitionError
from .dag import Dag, members
from .partition import PartitionOptions, tied_pairs

MAX_NODES = 16


def brute_force(dag: Dag, costs: np.ndarray, options: PartitionOptions) -> tuple[int, tuple[int, ...]] | None:
    """(min crossing bytes, boundaries) over all feasible chains, or None if none is feasible."""
    if dag.n > MAX_NODES:
        raise PartitionError(f"brute force is for graphs of <= {MAX_NODES} nodes, this one has {dag.n}")
    ties = tied_pairs(dag, options.shared_weights)
    const = dag.constant  # constant nodes: before every boundary, recomputed where read, cost 0
    costs = [0.0 if const >> i & 1 else float(c) for i, c in enumerate(costs)]
    downsets = [
        m for m in range(1 << dag.n)
        if dag.is_downset(m) and m & const == const and all((m >> a & 1) == (m >> b & 1) for a, b in ties)
    ]
    k, tol, cap = options.stages, options.tolerance, options.memory_cap
    total = float(sum(costs))
    t = total / k
    eps = 1e-9 * max(1.0, total)
    cost = {m: float(sum(costs[i] for i in members(m))) for m in [0, *downsets]}
    cut = {m: dag.cut_bytes(m) for m in downsets}

    def stage_ok(before: int, upto: int) -> bool:
        if before & ~upto or not upto & ~before & ~const:
            return False
        if not (1 - tol) * t - eps <= cost[upto] - cost[before] <= (1 + tol) * t + eps:
            return False
        return cap is None or memory(before, upto) <= cap

    def memory(before: int, upto: int) -> int:
        mask = upto & ~before & ~const
        runs = mask | dag.recomputed(mask, last=upto == dag.all)
        weights = sum(dag.value_bytes[c] for c, users in dag.const_users.items() if users & runs)
        outputs = set(dag.graph.outputs)
        outs = [v for v, p in dag.producer.items() if (
            (mask >> p & 1 and (v in outputs or any(not mask >> c & 1 for c in dag.consumers.get(v, ()))))
            or (upto == dag.all and runs >> p & 1 and const >> p & 1 and v in outputs))]
        ins = [v for v, readers in dag.consumers.items()
               if v not in dag.graph.consts and not (v in dag.producer and runs >> dag.producer[v] & 1)
               and any(mask >> c & 1 for c in readers)]
        return weights + sum(dag.value_bytes[v] for v in (*outs, *ins))

    best: tuple[int, tuple[int, ...]] | None = None

    def extend(chain: tuple[int, ...], spent: int) -> None:
        nonlocal best
        last = chain[-1] if chain else 0
        if len(chain) == k - 1:
            if stage_ok(last, dag.all) and (best is None or spent < best[0]):
                best = (spent, chain)
            return
        for m in downsets:
            if stage_ok(last, m) and m != dag.all:
                extend((*chain, m), spent + cut[m])

    extend((), 0)
    return best
