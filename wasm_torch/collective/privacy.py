"""Differential privacy for shared pattern-memory entries: clipping, calibrated Laplace noise, and an
accountant that refuses to exceed the budget.

What is protected. A node's dataset is its pattern-memory records: (pattern, configuration, measured
gain over the default). Two datasets are neighbours when they differ by one record (added or removed).
A release is ε-differentially private: whatever else an observer knows, the release's probability
changes by at most a factor e^ε when any single record is added or removed.

What is released: a noisy histogram. Per public *cell* (a partition of patterns every node computes
the same way without looking at anyone's data — here the pattern's dominant op group; the caller
supplies it) and per public *candidate* configuration j:

    sum_cj   = Σ_{records r in cell c with configuration j} clip(log gain_r, −L, L)  + Laplace(L / ε₁)
    count_cj = #{those records}                                                     + Laplace(1 / ε₂)

with ε₁ = ε₂ = ε / 2. Adding or removing one record changes one sum by at most L and one count by
1, so the vector of sums has L1 sensitivity L and the counts 1: the Laplace mechanism makes each
ε/2-DP, and both together ε-DP (sequential composition). Entries whose noisy count is below
`min_count` are left out — a function of the noisy output only, so still ε-DP. The receiver pools
the entries of all its peers per (cell, configuration) — Σ sum / (Σ count + prior) — so the noise
of independent releases averages out while the signal adds up.

Raw pattern vectors are never released: a 64-float vector clipped to a useful range would need
Laplace noise of scale (its L1 range) / ε per coordinate — at ε = 0.1 far larger than the vector.

The accountant. A record's privacy loss is the sum of the ε of every release that included it
(sequential composition); releases of disjoint records compose in parallel. `Accountant` keeps
the loss spent per record id and refuses (PrivacyBudgetExceeded) any release that would take some
record past the budget. With the defaults (ε = 0.1 per release, budget 0.1) each record is shared
exactly once, so the node's whole memory stays 0.1-DP however long it keeps sharing; a longer sync
interval puts more records into each release, which is what shrinks the noise relative to the signal.
Sync intervals are bounded to [SYNC_MIN_S, SYNC_MAX_S] = [1 min, 1 h].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import CollectiveError, PrivacyBudgetExceeded

EPSILON = 0.1  # per release, and (by default) the whole budget of a record
SYNC_MIN_S, SYNC_MAX_S = 60.0, 3600.0
GAIN_CLIP = math.log(4.0)  # log-gains are clipped to [0, ln 4]: one record moves a sum by <= ln 4


def check_interval(seconds: float) -> float:
    if not (isinstance(seconds, int | float) and SYNC_MIN_S <= seconds <= SYNC_MAX_S):
        raise CollectiveError(
            f"the pattern sync interval must be between {SYNC_MIN_S:.0f} s and {SYNC_MAX_S:.0f} s, got {seconds!r}"
        )
    return float(seconds)


def check_epsilon(eps: float, what: str = "epsilon") -> float:
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise CollectiveError(f"{what} must be a finite number > 0, got {eps!r}")
    return float(eps)


@dataclass(frozen=True)
class Record:
    rid: str  # stable id: the accountant charges it
    cell: int  # public cell of the pattern, in [0, cells)
    config: str  # canonical JSON of the configuration
    log_gain: float  # log(default latency / this configuration's latency)


@dataclass(frozen=True)
class Shared:
    """One released entry: in `cell`, `config`'s noisy clipped log-gain sum over ~`count` records."""

    cell: int
    config: str
    sum: float
    count: float
    epsilon: float

    def to_json(self) -> dict[str, Any]:
        return {"cell": self.cell, "config": self.config, "sum": self.sum, "count": self.count,
                "epsilon": self.epsilon}  # fmt: skip


class Accountant:
    """Privacy loss spent per record; refuses any release that would exceed `budget` for a record."""

    def __init__(self, budget: float = EPSILON, spent: Mapping[str, float] | None = None) -> None:
        self.budget = check_epsilon(budget, "the privacy budget")
        self.spent: dict[str, float] = {}
        for k, v in (spent or {}).items():
            if not isinstance(k, str) or not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise CollectiveError(f"privacy accountant state: bad entry {k!r}: {v!r}")
            self.spent[k] = float(v)

    def remaining(self, rid: str) -> float:
        return self.budget - self.spent.get(rid, 0.0)

    def can_release(self, rids: Iterable[str], eps: float) -> bool:
        return all(self.spent.get(r, 0.0) + eps <= self.budget * (1 + 1e-9) for r in rids)

    def charge(self, rids: Sequence[str], eps: float) -> None:
        check_epsilon(eps)
        over = [r for r in rids if self.spent.get(r, 0.0) + eps > self.budget * (1 + 1e-9)]
        if over:
            raise PrivacyBudgetExceeded(
                f"refused: releasing {len(rids)} records at epsilon {eps} would take {len(over)} of them past "
                f"the budget {self.budget} (e.g. {over[0]!r} has {self.remaining(over[0]):.4f} left)"
            )
        for r in rids:
            self.spent[r] = self.spent.get(r, 0.0) + eps

    def fresh(self, rids: Iterable[str], eps: float) -> list[str]:
        """The ids that can still take a release at `eps`."""
        return [r for r in rids if self.spent.get(r, 0.0) + eps <= self.budget * (1 + 1e-9)]

    def to_json(self) -> dict[str, Any]:
        return {"budget": self.budget, "spent": dict(self.spent)}

    @classmethod
    def from_json(cls, d: Any) -> Accountant:
        if not isinstance(d, dict) or set(d) != {"budget", "spent"} or not isinstance(d["spent"], dict):
            raise CollectiveError('privacy accountant state must be {"budget": number, "spent": {id: number}}')
        return cls(d["budget"], d["spent"])


def release(
    records: Sequence[Record],
    candidates: Sequence[str],
    cells: int,
    accountant: Accountant,
    epsilon: float = EPSILON,
    rng: np.random.Generator | None = None,
    clip: float = GAIN_CLIP,
    min_count: float = 1.0,
) -> list[Shared]:
    """One ε-DP release of `records` (all charged `epsilon` first; refused if over budget).

    candidates: the public list of configurations released (records with other configurations
    count for nothing). cells: the number of public cells. epsilon=inf releases the exact
    histogram (no privacy: for measuring what the noise costs) and charges nothing."""
    if cells < 1 or not candidates:
        raise CollectiveError("need cells >= 1 and at least one candidate configuration")
    if len(set(candidates)) != len(candidates):
        raise CollectiveError("candidate configurations must be distinct")
    for r in records:
        if not 0 <= r.cell < cells:
            raise CollectiveError(f"record {r.rid!r} is in cell {r.cell}, outside [0, {cells})")
        if not math.isfinite(r.log_gain):
            raise CollectiveError(f"record {r.rid!r} has a non-finite gain")
    exact = math.isinf(epsilon) and epsilon > 0
    if not exact:
        check_epsilon(epsilon)
        accountant.charge([r.rid for r in records], epsilon)
    rng = rng or np.random.default_rng()
    col = {c: j for j, c in enumerate(candidates)}
    sums = np.zeros((cells, len(candidates)))
    counts = np.zeros((cells, len(candidates)))
    for r in records:
        j = col.get(r.config)
        if j is not None:
            sums[r.cell, j] += min(max(r.log_gain, -clip), clip)
            counts[r.cell, j] += 1
    if not exact:  # every cell and candidate, present or not: which entries appear is noise as well
        half = epsilon / 2
        sums = sums + rng.laplace(0.0, clip / half, sums.shape)
        counts = counts + rng.laplace(0.0, 1.0 / half, counts.shape)
    out: list[Shared] = []
    for c in range(cells):
        for j, cfg in enumerate(candidates):
            if counts[c, j] >= min_count:
                out.append(Shared(c, cfg, float(sums[c, j]), float(counts[c, j]), float(epsilon)))
    return out
