"""State-based counters: the G-counter and the PN-counter the ledger is built from.

A G-counter maps each replica (here: each issuing coordinator) to the amount that replica has
counted; `merge` is the pointwise maximum and the value is the sum. Because max is commutative,
associative and idempotent, replicas that exchange states in any order, any number of times,
converge. A PN-counter is two G-counters, increments P and decrements N; value = P - N.

In the ledger every (account, entry kind) total is a G-counter over issuers, and every balance is
a PN-counter built from them (wasm_torch/net/ledger.py).
"""

from __future__ import annotations

from collections.abc import Mapping


class GCounter:
    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self.counts: dict[str, int] = dict(counts or {})
        if any(v < 0 for v in self.counts.values()):
            raise ValueError("a G-counter only counts up")

    def increment(self, replica: str, n: int = 1) -> None:
        if n < 0:
            raise ValueError("a G-counter only counts up; use a PNCounter to count down")
        self.counts[replica] = self.counts.get(replica, 0) + n

    def get(self, replica: str) -> int:
        return self.counts.get(replica, 0)

    @property
    def value(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: GCounter) -> GCounter:
        keys = self.counts.keys() | other.counts.keys()
        return GCounter({k: max(self.get(k), other.get(k)) for k in keys})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GCounter):
            return NotImplemented
        keys = self.counts.keys() | other.counts.keys()
        return all(self.get(k) == other.get(k) for k in keys)

    def __repr__(self) -> str:
        return f"GCounter({self.counts})"


class PNCounter:
    __slots__ = ("n", "p")

    def __init__(self, p: GCounter | None = None, n: GCounter | None = None) -> None:
        self.p = p or GCounter()
        self.n = n or GCounter()

    def increment(self, replica: str, k: int = 1) -> None:
        self.p.increment(replica, k)

    def decrement(self, replica: str, k: int = 1) -> None:
        self.n.increment(replica, k)

    def get(self, replica: str) -> int:
        return self.p.get(replica) - self.n.get(replica)

    @property
    def value(self) -> int:
        return self.p.value - self.n.value

    def merge(self, other: PNCounter) -> PNCounter:
        return PNCounter(self.p.merge(other.p), self.n.merge(other.n))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PNCounter):
            return NotImplemented
        return self.p == other.p and self.n == other.n

    def __repr__(self) -> str:
        return f"PNCounter(p={self.p.counts}, n={self.n.counts})"
