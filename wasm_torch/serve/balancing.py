"""Load-balancing policies behind one interface (shaped like Ray Serve's `choose_replicas`).

A policy ranks candidate replicas, most preferred first; the caller walks the ranking and takes
the first replica that accepts (circuit closed, not isolated, queue not full). The same policy
objects drive the live pool and the discrete-event simulation (`sim/balancing.py`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from wasm_torch.serve.clock import Clock, monotonic


class LoadStats:
    """What a balancer may know about one replica: queue depth, speed and a peak-EWMA of latency.

    Peak-EWMA (Finagle/Linkerd): a sample above the estimate replaces it at once; lower samples
    pull it down with time constant `tau_s`. A failed call counts as at least `failure_penalty_s`
    so that a replica failing fast does not look attractive.
    """

    def __init__(
        self,
        rid: int,
        capacity: float = 1.0,
        max_outstanding: int = 256,
        tau_s: float = 10.0,
        failure_penalty_s: float = 0.25,
        clock: Clock = monotonic,
    ) -> None:
        self.rid, self.capacity, self.max_outstanding = rid, capacity, max_outstanding
        self.tau_s, self.failure_penalty_s, self.clock = tau_s, failure_penalty_s, clock
        self.outstanding = 0
        self.ewma_s = 0.0
        self._stamp = clock()
        self._lock = threading.Lock()

    def started(self) -> None:
        with self._lock:
            self.outstanding += 1

    def finished(self, latency_s: float, ok: bool = True) -> None:
        with self._lock:
            self.outstanding = max(0, self.outstanding - 1)
            self.observe(latency_s if ok else max(latency_s, self.failure_penalty_s))

    def dropped(self) -> None:
        """A request left without running (cancelled, or handed back by the watchdog)."""
        with self._lock:
            self.outstanding = max(0, self.outstanding - 1)

    def observe(self, sample_s: float) -> None:
        now = self.clock()
        if sample_s > self.ewma_s:
            self.ewma_s = sample_s
        else:
            w = math.exp(-max(0.0, now - self._stamp) / self.tau_s)
            self.ewma_s = self.ewma_s * w + sample_s * (1.0 - w)
        self._stamp = now

    def cost(self) -> float:
        """Decays toward 0 while idle (as Finagle does), so a shunned replica is probed again."""
        idle = max(0.0, self.clock() - self._stamp)
        return max(self.ewma_s * math.exp(-idle / self.tau_s), 1e-6) * (self.outstanding + 1)

    @property
    def utilisation(self) -> float:
        return min(1.0, self.outstanding / max(1, self.max_outstanding))


class Policy(Protocol):
    name: str

    def rank(self, candidates: Sequence[LoadStats], key: bytes | None = None) -> list[LoadStats]: ...


def _rest(chosen: list[LoadStats], candidates: Sequence[LoadStats]) -> list[LoadStats]:
    ids = {c.rid for c in chosen}
    return chosen + sorted((c for c in candidates if c.rid not in ids), key=lambda c: c.outstanding)


class RoundRobin:
    name = "round_robin"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._counter = itertools.count()

    def rank(self, candidates: Sequence[LoadStats], key: bytes | None = None) -> list[LoadStats]:
        if not candidates:
            return []
        start = next(self._counter) % len(candidates)
        return list(candidates[start:]) + list(candidates[:start])


class LeastOutstanding:
    """Join the shortest queue, ties broken at random (needs exact state: fine in-process)."""

    name = "least_outstanding"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def rank(self, candidates: Sequence[LoadStats], key: bytes | None = None) -> list[LoadStats]:
        return sorted(candidates, key=lambda c: (c.outstanding, self.rng.random()))


class PowerOfTwo:
    """Sample two replicas at random, prefer the one with fewer outstanding requests."""

    name = "p2c"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def _pair(self, candidates: Sequence[LoadStats]) -> list[LoadStats]:
        return self.rng.sample(list(candidates), 2) if len(candidates) >= 2 else list(candidates)

    def rank(self, candidates: Sequence[LoadStats], key: bytes | None = None) -> list[LoadStats]:
        pair = sorted(self._pair(candidates), key=lambda c: c.outstanding)
        return _rest(pair, candidates)


class PeakEwma(PowerOfTwo):
    """P2C on cost = peak-EWMA latency × (outstanding + 1)."""

    name = "peak_ewma"

    def rank(self, candidates: Sequence[LoadStats], key: bytes | None = None) -> list[LoadStats]:
        pair = sorted(self._pair(candidates), key=lambda c: c.cost())
        return _rest(pair, candidates)


def rendezvous_owner(candidates: Sequence[LoadStats], key: bytes) -> int:
    """Replica id that owns `key` by highest-random-weight hashing (stable as replicas come and go)."""

    def weight(c: LoadStats) -> bytes:
        return hashlib.blake2b(key + c.rid.to_bytes(4, "little"), digest_size=8).digest()

    return max(candidates, key=weight).rid


class WeightedScore:
    """The seed's score: 0.4·capacity + 0.3·(1 − utilisation) + 0.3·affinity, highest first.

    capacity is relative to the fastest candidate; utilisation is outstanding / max_outstanding;
    affinity is 1 for the replica owning the request key (rendezvous hashing), else 0.
    """

    name = "weighted"

    def __init__(
        self, rng: random.Random | None = None, weights: tuple[float, float, float] = (0.4, 0.3, 0.3)
    ) -> None:
        self.rng = rng or random.Random()
        self.weights = weights

    def score(self, c: LoadStats, top_capacity: float, owner: int | None) -> float:
        wc, wu, wa = self.weights
        affinity = 1.0 if owner == c.rid else 0.0
        return wc * c.capacity / top_capacity + wu * (1.0 - c.utilisation) + wa * affinity

    def rank(self, candidates: Sequence[LoadStats], key: bytes | None = None) -> list[LoadStats]:
        if not candidates:
            return []
        top = max(c.capacity for c in candidates) or 1.0
        owner = rendezvous_owner(candidates, key) if key is not None else None
        return sorted(candidates, key=lambda c: (-self.score(c, top, owner), self.rng.random()))


POLICIES: dict[str, Callable[[random.Random | None], Policy]] = {
    "round_robin": RoundRobin,
    "least_outstanding": LeastOutstanding,
    "p2c": PowerOfTwo,
    "peak_ewma": PeakEwma,
    "weighted": WeightedScore,
}


def make_policy(name: str, rng: random.Random | None = None) -> Policy:
    try:
        return POLICIES[name](rng)
    except KeyError:
        raise ValueError(f"unknown balancing policy {name!r}; choose from {sorted(POLICIES)}") from None
