"""A seeded discrete-event simulation of the balancing policies (no wall clock anywhere).

Replicas are FIFO single servers with lognormal service times scaled by their speed, a small
per-replica LRU result cache (a hit costs a tenth of the work, which is what affinity is for),
and optional faults: one replica slowed down, one failing a fraction of its requests quickly.
Requests arrive as a Poisson stream at load `rho` of the nominal capacity; keys follow a Zipf
law. A request succeeds when it completes without error within `timeout_s`; percentiles count a
failed request as never answered (infinite latency), so a p99 is finite only if ≥ 99 % succeed.

The policies are the very objects the live pool uses (`balancing.py`), driven by a simulated
clock; the optional circuit breakers are `breaker.CircuitBreaker` on the same clock.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wasm_torch.serve.balancing import POLICIES, LoadStats, make_policy
from wasm_torch.serve.breaker import CircuitBreaker


@dataclass
class ReplicaSpec:
    speed: float = 1.0  # nominal relative capacity (what a balancer may be told)
    slowdown: float = 1.0  # actual service-time multiplier (a degraded replica)
    fail_prob: float = 0.0  # fraction of requests failing (after 10% of the service time)


@dataclass
class Scenario:
    replicas: list[ReplicaSpec] = field(
        default_factory=lambda: [
            ReplicaSpec(1.0),
            ReplicaSpec(1.0),
            ReplicaSpec(2.0),
            ReplicaSpec(0.5),
            ReplicaSpec(1.0, slowdown=10.0),  # the slow one
            ReplicaSpec(1.0, fail_prob=0.5),  # the failing one
        ]
    )
    requests: int = 20_000
    rho: float = 0.5  # offered load / nominal capacity (~0.7 of the real one)
    service_s: float = 0.010  # mean service time at speed 1
    sigma: float = 0.5  # lognormal shape
    timeout_s: float = 0.100
    keys: int = 2_000
    zipf_s: float = 1.1
    cache_entries: int = 200
    breakers: bool = False
    retries: int = 0


class _Sim:
    def __init__(self, sc: Scenario, policy: str, seed: int) -> None:
        self.sc, self.now = sc, 0.0
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        clock = lambda: self.now  # noqa: E731
        self.policy = make_policy(policy, random.Random(seed + 1))
        self.stats = [
            LoadStats(
                i, spec.speed, max_outstanding=64, tau_s=1.0, failure_penalty_s=sc.timeout_s, clock=clock
            )
            for i, spec in enumerate(sc.replicas)
        ]
        self.breakers = [
            CircuitBreaker(
                window=20, min_calls=10, failure_rate=0.3, open_s=1.0, half_open_calls=3, clock=clock
            )
            for _ in sc.replicas
        ]
        self.queues: list[deque[tuple[float, int, int]]] = [deque() for _ in sc.replicas]
        self.busy = [False] * len(sc.replicas)
        self.caches: list[OrderedDict[int, None]] = [OrderedDict() for _ in sc.replicas]
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.latency: list[float] = []
        self.ok: list[bool] = []
        self.served = [0] * len(sc.replicas)
        self.max_queue = 0
        ranks = np.arange(1, sc.keys + 1, dtype=float)
        p = ranks**-sc.zipf_s
        self.key_p = p / p.sum()

    def push(self, t: float, kind: str, data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, data))

    def route(self, arrival: float, key: int, attempt: int, exclude: int | None) -> None:
        cands = [
            s
            for s in self.stats
            if s.rid != exclude and (not self.sc.breakers or self.breakers[s.rid].would_allow())
        ]
        for s in self.policy.rank(cands, key.to_bytes(4, "little")):
            if self.sc.breakers and not self.breakers[s.rid].allow():
                continue
            self.enqueue(s.rid, arrival, key, attempt)
            return
        self.latency.append(self.now - arrival)  # nobody would take it: fail fast
        self.ok.append(False)

    def enqueue(self, rid: int, arrival: float, key: int, attempt: int) -> None:
        self.stats[rid].started()
        self.queues[rid].append((arrival, key, attempt))
        self.max_queue = max(self.max_queue, len(self.queues[rid]))
        if not self.busy[rid]:
            self.start(rid)

    def start(self, rid: int) -> None:
        arrival, key, attempt = self.queues[rid].popleft()
        spec, sc = self.sc.replicas[rid], self.sc
        mu = math.log(sc.service_s / spec.speed) - sc.sigma**2 / 2
        work = self.np_rng.lognormal(mu, sc.sigma) * spec.slowdown
        cache = self.caches[rid]
        if key in cache:
            cache.move_to_end(key)
            work *= 0.1
        fails = self.rng.random() < spec.fail_prob
        if fails:
            work *= 0.1
        self.busy[rid] = True
        self.push(self.now + work, "done", (rid, arrival, key, attempt, not fails, self.now))

    def done(self, rid: int, arrival: float, key: int, attempt: int, ok: bool, started: float) -> None:
        self.busy[rid] = False
        self.served[rid] += 1
        self.stats[rid].finished(self.now - started, ok)
        if self.sc.breakers:
            self.breakers[rid].record(ok)
        if ok:
            cache = self.caches[rid]
            cache[key] = None
            cache.move_to_end(key)
            while len(cache) > self.sc.cache_entries:
                cache.popitem(last=False)
        if not ok and attempt < self.sc.retries:
            self.route(arrival, key, attempt + 1, exclude=rid)
        else:
            latency = self.now - arrival
            self.latency.append(latency)
            self.ok.append(ok and latency <= self.sc.timeout_s)
        if self.queues[rid]:
            self.start(rid)

    def run(self) -> dict[str, Any]:
        sc = self.sc
        capacity = sum(s.speed for s in sc.replicas) / sc.service_s
        rate = sc.rho * capacity
        t = 0.0
        keys = self.np_rng.choice(sc.keys, size=sc.requests, p=self.key_p)
        for i in range(sc.requests):
            t += self.rng.expovariate(rate)
            self.push(t, "arrive", int(keys[i]))
        while self.events:
            self.now, _, kind, data = heapq.heappop(self.events)
            if kind == "arrive":
                self.route(self.now, data, 0, None)
            else:
                self.done(*data)
        lat = np.array(self.latency) * 1e3
        ok = np.array(self.ok)
        seen = np.where(ok, lat, np.inf)  # a failed request never got its answer: infinite latency

        def pct(a: np.ndarray, q: float) -> float:
            return float(np.percentile(a, q, method="inverted_cdf")) if a.size else math.inf

        return {
            "p50_ms": pct(seen, 50),
            "p99_ms": pct(seen, 99),
            "p999_ms": pct(seen, 99.9),
            "ok_p99_ms": pct(lat[ok], 99),
            "success_rate": float(ok.mean()),
            "max_queue": self.max_queue,
            "share": [round(s / max(1, sum(self.served)), 4) for s in self.served],
        }


POLICY_NAMES = tuple(POLICIES)  # the one list: balancing.POLICIES


def simulate(policy: str, scenario: Scenario | None = None, seed: int = 0) -> dict[str, Any]:
    return _Sim(scenario or Scenario(), policy, seed).run()


def compare(scenario: Scenario | None = None, seeds: tuple[int, ...] = (0,)) -> dict[str, dict[str, Any]]:
    """Every policy on the same scenario; figures are medians over the seeds."""
    out: dict[str, dict[str, Any]] = {}
    for name in POLICY_NAMES:
        runs = [simulate(name, scenario, s) for s in seeds]
        out[name] = {
            k: (float(np.median([r[k] for r in runs])) if k != "share" else runs[0][k]) for k in runs[0]
        }
    return out
