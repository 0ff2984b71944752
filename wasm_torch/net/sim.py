"""A seeded simulation of the network's validation and credit at scale (no database, no HTTP): the
same quorum rule (quorum.decide), replication policy (quorum.target_replicas), reputation and slash
formulas (economy) the coordinator uses, applied to many simulated nodes of three kinds of cheater:

    lazy       returns garbage instead of computing: a fresh wrong hash every time, never agreeing
    colluding  all colluders return the same wrong hash for a task, so two of them form a quorum
    patient    colludes like the above, but only after its clean streak makes it trusted, i.e. it
               behaves until adaptive replication would stop checking it every time

Each task's first replica goes to a random eligible node (reputation >= min_reputation); the policy
decides how many replicas it needs; more distinct random nodes are added on a mismatch, up to
max_replicas. Reported per run: validation overhead (replicas executed per task, minus one), tasks
whose accepted result is wrong, credit paid for wrong work (share of all credit), and how many
cheaters were cut off. Every task is worth one credit per replica paid, so credits are counts.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from . import economy
from .params import NetworkParams
from .quorum import decide, target_replicas

KINDS = ("lazy", "colluding", "patient")
POLICIES: dict[str, NetworkParams] = {
    "fixed-2": NetworkParams(replication=2),
    "fixed-3": NetworkParams(replication=3),
    "adaptive": NetworkParams(replication=2, adaptive_replication=True),
}


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 10_000
    tasks: int = 100_000
    cheat_fraction: float = 0.05
    cheat_kind: str = "colluding"
    policy: str = "fixed-2"
    seed: int = 0
    params: NetworkParams = field(default_factory=NetworkParams)  # overridden by `policy` unless "custom"


def simulate(cfg: SimConfig) -> dict[str, Any]:
    if cfg.cheat_kind not in KINDS:
        raise ValueError(f"cheat_kind must be one of {KINDS}")
    prm = cfg.params if cfg.policy == "custom" else POLICIES[cfg.policy]
    rng = random.Random(cfg.seed)
    n = cfg.nodes
    n_cheat = round(n * cfg.cheat_fraction)
    kind = [0] * n  # 0 honest, 1 cheater
    for i in rng.sample(range(n), n_cheat):
        kind[i] = 1
    rep = [economy.REPUTATION_START] * n
    streak = [0] * n
    stake = [prm.join_stake] * n
    eligible = list(range(n))
    dirty = False
    m = {"executions": 0, "wrong_accepted": 0, "inconclusive": 0, "credit": 0, "credit_wrong": 0,
         "credit_to_cheaters": 0, "slashed": 0, "single_accepted": 0}  # fmt: skip
    lazy_token = 0

    def answer(node: int) -> str:
        nonlocal lazy_token
        if kind[node] == 0:
            return "true"
        if cfg.cheat_kind == "lazy":
            lazy_token += 1
            return f"lazy-{lazy_token}"
        if cfg.cheat_kind == "patient" and streak[node] < prm.trust_streak:
            return "true"  # still building trust
        return "collude"

    for _ in range(cfg.tasks):
        if dirty:
            eligible = [i for i in range(n) if rep[i] >= prm.min_reputation]
            dirty = False
        if len(eligible) < prm.max_replicas:
            break
        first = eligible[rng.randrange(len(eligible))]
        need = target_replicas(streak[first], prm, rng.random)
        used = {first}
        results = [(first, answer(first))]
        while True:
            while len(results) < need:  # distinct random eligible nodes
                while (extra := eligible[rng.randrange(len(eligible))]) in used:
                    pass
                used.add(extra)
                results.append((extra, answer(extra)))
            v = decide([(str(a), h) for a, h in results], 0, 1 if need == 1 else 2, prm.max_replicas)
            if v.state != "more":
                break
            need += 1
        m["executions"] += len(results)
        if v.state != "canonical":
            m["inconclusive"] += 1
            continue
        if need == 1:
            m["single_accepted"] += 1
        wrong = v.canonical != "true"
        m["wrong_accepted"] += wrong
        for a, h in results:
            if h == v.canonical:
                m["credit"] += 1
                m["credit_wrong"] += wrong
                m["credit_to_cheaters"] += kind[a]
                rep[a] = economy.reputation_after_success(rep[a])
                streak[a] += 1
            else:
                rep[a] = economy.reputation_after_fault(rep[a], "wrong")
                streak[a] = 0
                cut = economy.slash_amount(stake[a], prm.slash_rate)
                stake[a] -= cut
                m["slashed"] += cut
                dirty = dirty or rep[a] < prm.min_reputation
    out = {
        **dataclasses.asdict(cfg), "params": None, "policy_params": {"replication": prm.replication,
        "adaptive": prm.adaptive_replication, "max_replicas": prm.max_replicas}, **m,
        "overhead": m["executions"] / max(1, cfg.tasks) - 1.0,
        "wrong_rate": m["wrong_accepted"] / max(1, cfg.tasks),
        "credit_wrong_share": m["credit_wrong"] / max(1, m["credit"]),
        "cheaters": n_cheat, "cheaters_cut_off": sum(1 for i in range(n) if kind[i] and rep[i] < prm.min_reputation),
        "honest_cut_off": sum(1 for i in range(n) if not kind[i] and rep[i] < prm.min_reputation),
    }  # fmt: skip
    del out["params"]
    return out
