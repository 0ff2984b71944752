"""Mutual models: a node's model of itself and of each peer, and the peer choice they drive.

Each peer (for a node: each coordinator it serves) is modelled by three beliefs, updated from what
the node observes and nothing else:

    latency       exponentially weighted mean and variance of round-trip times (ms)
    availability  Beta(a, b): answered calls count for a, unreachable ones for b
    honesty       Beta(a, b): audits where the peer paid for the work it acknowledged count for a,
                  audits where acknowledged work went unpaid (or the node was slashed for results it
                  knows to be correct) count for b

Both Beta counts decay by `forget` per observation, so a peer that changes behaviour is noticed
within ~1 / (1 − forget) observations instead of being averaged away.

The node's model of itself: how long it takes to run a task (EWMA of its own run times), so it can
tell whether it would finish within a peer's lease; a peer whose lease it would likely miss is worth
little (a late result earns nothing and costs reputation).

Choice is Thompson sampling: draw availability and honesty from their Beta posteriors, and take the
peer with the largest sampled utility

    u = availability · honesty · on_time / (1 + latency / latency_ref)

so peers it knows little about are still tried (their posteriors are wide) and a bad peer is
abandoned after a few bad draws. `mutual_sim` measures the credit this earns against round-robin
(what the node did before) and random choice (bench/collective_mutual.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from .errors import CollectiveError


@dataclass
class PeerModel:
    latency_ms: float = 100.0
    latency_var: float = 100.0**2
    avail_a: float = 1.0
    avail_b: float = 1.0
    honest_a: float = 1.0
    honest_b: float = 1.0
    forget: float = 0.98
    alpha: float = 0.2  # EWMA weight of a new latency sample
    calls: int = 0

    def observe_call(self, ok: bool, latency_ms: float | None = None) -> None:
        self.calls += 1
        self.avail_a = 1.0 + (self.avail_a - 1.0) * self.forget + (1.0 if ok else 0.0)
        self.avail_b = 1.0 + (self.avail_b - 1.0) * self.forget + (0.0 if ok else 1.0)
        if ok and latency_ms is not None and math.isfinite(latency_ms) and latency_ms >= 0:
            d = latency_ms - self.latency_ms
            self.latency_ms += self.alpha * d
            self.latency_var = (1 - self.alpha) * (self.latency_var + self.alpha * d * d)

    def observe_audit(self, paid: bool) -> None:
        self.honest_a = 1.0 + (self.honest_a - 1.0) * self.forget + (1.0 if paid else 0.0)
        self.honest_b = 1.0 + (self.honest_b - 1.0) * self.forget + (0.0 if paid else 1.0)

    @property
    def availability(self) -> float:
        return self.avail_a / (self.avail_a + self.avail_b)

    @property
    def honesty(self) -> float:
        return self.honest_a / (self.honest_a + self.honest_b)

    def to_json(self) -> dict[str, float]:
        return {"latency_ms": round(self.latency_ms, 2), "availability": round(self.availability, 4),
                "honesty": round(self.honesty, 4), "calls": self.calls}  # fmt: skip


@dataclass
class SelfModel:
    """The node's own run time per task (EWMA, seconds) and the share of its time it was up."""

    run_s: float | None = None
    alpha: float = 0.2
    tasks: int = 0

    def observe_run(self, seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds >= 0):
            return
        self.tasks += 1
        self.run_s = seconds if self.run_s is None else self.run_s + self.alpha * (seconds - self.run_s)

    def on_time(self, lease_s: float, margin: float = 1.5) -> float:
        """Probability-like score that a task finishes within `lease_s`: 1 when the predicted run time
        with a safety margin fits (or nothing is known yet), falling off beyond."""
        if self.run_s is None or lease_s <= 0:
            return 1.0
        need = self.run_s * margin
        return 1.0 if need <= lease_s else max(0.05, lease_s / need) ** 4


@dataclass
class Chooser:
    latency_ref_ms: float = 100.0
    strategy: str = "thompson"  # thompson | greedy | round-robin | random
    rng: random.Random = field(default_factory=random.Random)
    _k: int = 0

    STRATEGIES = ("thompson", "greedy", "round-robin", "random")

    def __post_init__(self) -> None:
        if self.strategy not in self.STRATEGIES:
            raise CollectiveError(f"strategy must be one of {self.STRATEGIES}, got {self.strategy!r}")

    def utility(self, m: PeerModel, on_time: float = 1.0, sample: bool = True) -> float:
        if sample:
            a = self.rng.betavariate(m.avail_a, m.avail_b)
            h = self.rng.betavariate(m.honest_a, m.honest_b)
        else:
            a, h = m.availability, m.honesty
        return a * h * on_time / (1.0 + m.latency_ms / self.latency_ref_ms)

    def choose(self, models: Mapping[Hashable, PeerModel], candidates: Sequence[Hashable],
               on_time: Mapping[Hashable, float] | None = None) -> Hashable:  # fmt: skip
        if not candidates:
            raise CollectiveError("no peer to choose from")
        if self.strategy == "round-robin":
            self._k += 1
            return candidates[self._k % len(candidates)]
        if self.strategy == "random":
            return self.rng.choice(list(candidates))
        ot = on_time or {}
        sample = self.strategy == "thompson"
        return max(candidates, key=lambda c: self.utility(models[c], ot.get(c, 1.0), sample))


# ---- simulation at scale ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MutualSim:
    nodes: int = 1000
    coordinators: int = 20
    steps: int = 300  # requests per node
    strategy: str = "thompson"
    turncoat_at: float = 0.5  # share of the run after which one good coordinator stops paying
    audit_every: int = 5  # acknowledged results between audits of payment
    seed: int = 0


def mutual_sim(cfg: MutualSim) -> dict[str, float]:
    """Nodes pick a coordinator per request. Coordinator c answers with probability avail_c, after
    latency_c ms, leases a task with lease_s_c, and pays an acknowledged result with probability
    honest_c; node speeds vary (run time 0.5-8 s), so some nodes miss short leases (late: unpaid).
    Credit = paid results; time = latency + run time per request. Returns credit per node-hour and
    the share of work done for nothing."""
    rng = random.Random(cfg.seed)
    C = cfg.coordinators
    avail = [rng.uniform(0.6, 0.99) for _ in range(C)]
    lat = [rng.uniform(10, 400) for _ in range(C)]
    honest = [1.0 if rng.random() < 0.7 else rng.uniform(0.2, 0.7) for _ in range(C)]
    lease = [rng.choice([3.0, 10.0, 30.0]) for _ in range(C)]
    good = max(range(C), key=lambda c: avail[c] * honest[c] / (1 + lat[c] / 100))
    credit = wasted = time_s = 0.0
    switch = int(cfg.steps * cfg.turncoat_at)
    for _ in range(cfg.nodes):
        speed = rng.uniform(0.5, 8.0)
        models = {c: PeerModel() for c in range(C)}
        me = SelfModel()
        chooser = Chooser(strategy=cfg.strategy, rng=random.Random(rng.random()))
        acked = {c: 0 for c in range(C)}
        unpaid = {c: 0 for c in range(C)}
        for step in range(cfg.steps):
            on_time = {c: me.on_time(lease[c]) for c in range(C)}
            c = chooser.choose(models, list(range(C)), on_time)
            h = 0.0 if (c == good and step >= switch) else honest[c]
            if rng.random() >= avail[c]:
                models[c].observe_call(False)
                time_s += 2.0  # a timeout
                continue
            ms = lat[c] * rng.uniform(0.7, 1.3)
            models[c].observe_call(True, ms)
            run = speed * rng.uniform(0.8, 1.2)
            me.observe_run(run)
            time_s += ms / 1000 + run
            if run > lease[c]:
                wasted += 1
                models[c].observe_audit(True)  # late is our fault, not the peer's
                continue
            acked[c] += 1
            if rng.random() < h:
                credit += 1
            else:
                wasted += 1
                unpaid[c] += 1
            if acked[c] % cfg.audit_every == 0:  # the node checks its balance: did the last ones pay?
                models[c].observe_audit(unpaid[c] == 0)
                unpaid[c] = 0
    return {"credit_per_node_hour": credit / (time_s / 3600), "wasted_share": wasted / max(1.0, credit + wasted),
            "credit": credit, "hours": time_s / 3600}  # fmt: skip
