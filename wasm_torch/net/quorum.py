"""Exact validation: replicas agree when the sha256 of their canonical output bytes is equal.

`decide` looks at the hashes the replicas of one task returned, once every replica asked for has
answered (replication 3 waits for all three, not the first two that agree):

- some hash is backed by `quorum` distinct nodes (2; 1 only when adaptive replication accepted a
  single trusted node) and no other hash is backed as strongly → that hash is canonical; nodes
  that returned anything else lose (and are slashed);
- no such hash → ask one more node (a mismatch between two sends a third), up to max_replicas;
- max_replicas answered without a quorum → inconclusive: nobody is paid or slashed.

Bit-identical outputs across hosts are what make this exact (no fuzzy comparator to game): our
f32 modules are deterministic across wasmtime and V8 when built without relaxed SIMD, and tasks pin
that build (tests/net/test_determinism.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .economy import spot_check_rate


@dataclass(frozen=True)
class Verdict:
    state: str  # "canonical" | "wait" | "more" | "inconclusive"
    canonical: str | None = None
    winners: tuple[str, ...] = ()  # node ids whose hash is canonical
    losers: tuple[str, ...] = ()  # node ids with another hash
    counts: dict[str, int] = field(default_factory=dict)


def decide(results: Sequence[tuple[str, str]], pending: int, quorum: int, max_replicas: int) -> Verdict:
    """results: (node id, output hash) per submitted replica; pending: replicas asked for that have not
    answered yet (running, or not even leased). Nothing is decided while any is pending."""
    counts = Counter(h for _, h in results)
    if pending > 0:
        return Verdict("wait", counts=dict(counts))
    ranked = counts.most_common()
    if ranked:
        best, n = ranked[0]
        unique = len(ranked) == 1 or ranked[1][1] < n
        if n >= quorum and unique:
            return Verdict(
                "canonical",
                best,
                tuple(node for node, h in results if h == best),
                tuple(node for node, h in results if h != best),
                dict(counts),
            )
    if len(results) >= max_replicas:
        return Verdict("inconclusive", counts=dict(counts))
    return Verdict("more", counts=dict(counts))


def target_replicas(streak: int, params: Any, draw: Callable[[], float]) -> int:
    """Replicas for a task whose first replica goes to a node with `streak` clean results in a row:
    `params.replication`, or 1 when adaptive replication is on, the node is trusted (streak >=
    trust_streak) and the draw misses the spot-check probability (economy.spot_check_rate)."""
    trusted = params.adaptive_replication and streak >= params.trust_streak
    if trusted and draw() >= spot_check_rate(streak, params.spot_check_floor, params.spot_check_half):
        return 1
    return int(params.replication)
