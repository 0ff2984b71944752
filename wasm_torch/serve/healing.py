"""Self-healing: rolling z-score detection on latency, error rate and memory per replica, and a
strategy ladder that really acts on the pool:

    1 clear caches -> 2 reduce batch size -> 3 restart instance -> 4 isolate replica -> 5 safe mode

One rung per anomalous tick (after a cooldown that lets the last action work); after
`recover_ticks` healthy ticks everything is undone and the recovery time is recorded.

About z-scores: a sample scored against a window that *contains it* can never exceed
√(n−1) (Samuelson's bound; with n = 10 that is exactly 3, so a "z > 3" rule never fires).
`RollingZ` scores each sample against the *previous* samples only, and floors the standard
deviation (relative and absolute) so a perfectly steady baseline does not make noise look huge.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from wasm_torch.serve.clock import Clock, monotonic
from wasm_torch.serve.metrics import Metrics
from wasm_torch.serve.pool import ModelPool

LADDER = ("clear_caches", "reduce_batch", "restart", "isolate", "safe_mode")


def max_z_within_window(n: int) -> float:
    """The largest |z| any sample can have against a window of n samples that includes it."""
    return math.sqrt(n - 1) if n > 1 else 0.0


class RollingZ:
    def __init__(
        self, window: int = 30, min_samples: int = 8, rel_floor: float = 0.1, abs_floor: float = 0.0
    ) -> None:
        self.history: deque[float] = deque(maxlen=window)
        self.min_samples, self.rel_floor, self.abs_floor = min_samples, rel_floor, abs_floor

    def score(self, x: float) -> float | None:
        """z of x against the history (None while warming up). Does not learn x."""
        n = len(self.history)
        if n < self.min_samples:
            return None
        mean = sum(self.history) / n
        var = sum((h - mean) ** 2 for h in self.history) / (n - 1)
        std = max(math.sqrt(var), self.rel_floor * abs(mean), self.abs_floor, 1e-12)
        return (x - mean) / std

    def learn(self, x: float) -> None:
        self.history.append(x)


@dataclass
class ReplicaHealth:
    latency: RollingZ = field(default_factory=lambda: RollingZ(abs_floor=1e-4))
    errors: RollingZ = field(default_factory=lambda: RollingZ(abs_floor=0.05))
    memory: RollingZ = field(default_factory=lambda: RollingZ(rel_floor=0.05, abs_floor=1 << 16))
    level: int = 0
    cooldown: int = 0
    healthy_ticks: int = 0
    since: float | None = None  # first anomalous tick of the current episode
    isolated_at: float | None = None
    seen: int = 0  # entries of replica.recent already consumed


class Orchestrator:
    def __init__(
        self,
        pools: Sequence[ModelPool],
        metrics: Metrics | None = None,
        threshold: float = 4.0,
        cooldown_ticks: int = 1,
        recover_ticks: int = 3,
        probation_s: float = 5.0,
        clock: Clock = monotonic,
    ) -> None:
        self.pools, self.metrics, self.threshold = list(pools), metrics, threshold
        self.cooldown_ticks, self.recover_ticks, self.probation_s = cooldown_ticks, recover_ticks, probation_s
        self.clock = clock
        self.health = {(p.name, r.rid): ReplicaHealth() for p in self.pools for r in p.replicas}
        self.events: list[tuple[float, str, int, str]] = []
        self.recoveries: list[tuple[str, int, float]] = []  # (model, replica, seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, old: ModelPool | None, new: ModelPool | None) -> None:
        """The registry swapped a model's pool (load, reload, unload): heal the new pool from a
        fresh baseline and forget the old one (the list is replaced whole: `tick` may be iterating)."""
        pools = [p for p in self.pools if p is not old and p is not new]
        if new is not None:
            for r in new.replicas:
                self.health[(new.name, r.rid)] = ReplicaHealth()
            pools.append(new)
        self.pools = pools

    # --- detection --------------------------------------------------------------------------
    def signals(self, pool: ModelPool, rid: int, h: ReplicaHealth) -> dict[str, float]:
        r = pool.replicas[rid]
        fresh = r.completed - h.seen
        h.seen = r.completed
        new = list(r.recent)[-fresh:] if fresh > 0 else []
        out: dict[str, float] = {"memory": float(r.memory_bytes)}
        if new:
            out["latency"] = sum(lat for _, lat, _ in new) / len(new)
            out["errors"] = sum(1 for *_, ok in new if not ok) / len(new)
        if r.breaker.state.name == "OPEN" and not r.isolated:
            out["errors"] = 1.0
        return out

    def assess(self, h: ReplicaHealth, sig: dict[str, float]) -> dict[str, float]:
        """z-scores above the threshold (empty = healthy). Learns only from healthy ticks."""
        detectors = {"latency": h.latency, "errors": h.errors, "memory": h.memory}
        zs = {k: detectors[k].score(v) for k, v in sig.items()}
        bad = {k: z for k, z in zs.items() if z is not None and z > self.threshold}
        if not bad:
            for k, v in sig.items():
                detectors[k].learn(v)
        return bad

    # --- acting -------------------------------------------------------------------------------
    def tick(self) -> None:
        now = self.clock()
        for pool in self.pools:
            any_bad = False
            for r in pool.replicas:
                h = self.health[(pool.name, r.rid)]
                if r.isolated:
                    if h.isolated_at is not None and now - h.isolated_at >= self.probation_s:
                        pool.rejoin(r.rid)
                        h.isolated_at = None
                        self._event(now, pool, r.rid, "rejoin")
                    continue
                sig = self.signals(pool, r.rid, h)
                if "latency" not in sig and "errors" not in sig:
                    continue  # no calls since the last tick: no evidence either way
                bad = self.assess(h, sig)
                any_bad = any_bad or bool(bad)
                if bad:
                    self._escalate(now, pool, r.rid, h)
                else:
                    self._calm(now, pool, r.rid, h)
            if (
                pool.safe_mode
                and not any_bad
                and all(self.health[(pool.name, r.rid)].level == 0 for r in pool.replicas)
            ):
                pool.exit_safe_mode()
                self._event(now, pool, -1, "exit_safe_mode")

    def _escalate(self, now: float, pool: ModelPool, rid: int, h: ReplicaHealth) -> None:
        h.healthy_ticks = 0
        if h.since is None:
            h.since = now
        if h.cooldown > 0:
            h.cooldown -= 1
            return
        if h.level >= len(LADDER):
            return
        h.level += 1
        action = LADDER[h.level - 1]
        if action == "isolate":
            if pool.isolate(rid):
                h.isolated_at = now
            else:  # the last replica standing is never isolated
                h.level += 1
                action = "safe_mode"
        if action == "clear_caches":
            pool.clear_caches()
        elif action == "reduce_batch":
            pool.reduce_batch(rid)
        elif action == "restart":
            pool.restart(rid)
        elif action == "safe_mode":
            pool.enter_safe_mode()
        h.cooldown = self.cooldown_ticks
        self._event(now, pool, rid, action)

    def _calm(self, now: float, pool: ModelPool, rid: int, h: ReplicaHealth) -> None:
        if h.since is None:
            return
        h.healthy_ticks += 1
        if h.healthy_ticks < self.recover_ticks:
            return
        pool.restore(rid)
        self.recoveries.append((pool.name, rid, now - h.since))
        self._event(now, pool, rid, "recovered")
        h.level, h.cooldown, h.healthy_ticks, h.since = 0, 0, 0, None

    def _event(self, now: float, pool: ModelPool, rid: int, action: str) -> None:
        self.events.append((now, pool.name, rid, action))
        if self.metrics is not None:
            self.metrics.healing.labels(pool.name, action).inc()

    # --- background loop ----------------------------------------------------------------------
    def start(self, interval_s: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.tick()

        self._thread = threading.Thread(target=loop, daemon=True, name="wt-healer")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
