"""A temporal, BTSP-style score of which nodes dominate measured time across runs.

Behavioral-timescale synaptic plasticity (BTSP) potentiates the synapses that were active within a
seconds-long window around a rare "plateau" event, in one shot. Here a run is a time step, a node's
share of the run's time is its activity, and a plateau is a slow run:

    share_v(t) = time_v(t) / Σ time(t)
    trace_v   <- decay · trace_v + share_v(t)                  (the behavioral-timescale window)
    plateau   =  first run (w = share), or Σ time(t) > plateau_ratio · baseline
    plateau:     w_v <- (1 − rate) · w_v + rate · trace_v / Σ trace
    otherwise:   w_v <- (1 − drift) · w_v + drift · share_v(t)
    baseline  <- smoothing · baseline + (1 − smoothing) · Σ time(t)

The weights sum to 1 and say which nodes the time goes to — weighted towards what was running when
runs were slow. The pipeline runner measures per-stage times; `attribute` spreads a stage's time over
its nodes by their modelled cost. tension.BoundaryBudget weights its tuning-budget requests with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class TemporalScore:
    def __init__(self, keys: Sequence[str], *, decay: float = 0.5, plateau_ratio: float = 1.25,
                 rate: float = 0.5, drift: float = 0.1, smoothing: float = 0.8):
        for name, v in (("decay", decay), ("rate", rate), ("drift", drift), ("smoothing", smoothing)):
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if not plateau_ratio >= 1:
            raise ValueError(f"plateau_ratio must be >= 1, got {plateau_ratio}")
        self.keys = tuple(keys)
        self._index = {k: i for i, k in enumerate(self.keys)}
        self.decay, self.plateau_ratio, self.rate, self.drift, self.smoothing = (
            decay, plateau_ratio, rate, drift, smoothing)
        n = len(self.keys)
        self.trace = np.zeros(n)
        self.weights = np.full(n, 1.0 / n) if n else np.zeros(0)
        self.baseline: float | None = None
        self.runs = 0
        self.plateaus = 0

    def observe(self, times: Mapping[str, float]) -> bool:
        """One run's measured time per node (seconds; nodes left out took 0). Returns whether it was
        a plateau (a slow run)."""
        t = np.zeros(len(self.keys))
        for k, v in times.items():
            if k not in self._index:
                raise KeyError(f"unknown node {k!r}")
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"time of {k!r} is {v}; times must be finite and >= 0")
            t[self._index[k]] = v
        total = float(t.sum())
        if total <= 0:
            return False
        share = t / total
        self.trace = self.decay * self.trace + share
        plateau = self.baseline is None or total > self.plateau_ratio * self.baseline
        if self.runs == 0:
            self.weights = share.copy()  # the first run is all we know
            self.plateaus += 1
        elif plateau:
            self.weights = (1 - self.rate) * self.weights + self.rate * self.trace / self.trace.sum()
            self.plateaus += 1
        else:
            self.weights = (1 - self.drift) * self.weights + self.drift * share
        self.baseline = total if self.baseline is None else (
            self.smoothing * self.baseline + (1 - self.smoothing) * total)
        self.runs += 1
        return plateau

    def scores(self) -> dict[str, float]:
        return dict(zip(self.keys, self.weights.tolist(), strict=True))

    def top(self, n: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-self.weights, kind="stable")[:n]
        return [(self.keys[i], float(self.weights[i])) for i in order]


def attribute(stage_times: Sequence[float], stage_keys: Sequence[Sequence[str]],
              node_cost: Mapping[str, float]) -> dict[str, float]:
    """Spread each stage's measured time over its nodes in proportion to their modelled cost
    (equally when the stage's nodes all cost 0)."""
    if len(stage_times) != len(stage_keys):
        raise ValueError(f"{len(stage_times)} stage times for {len(stage_keys)} stages")
    out: dict[str, float] = {}
    for t, keys in zip(stage_times, stage_keys, strict=True):
        if not keys:
            continue
        c = np.array([node_cost[k] for k in keys], dtype=np.float64)
        w = c / c.sum() if c.sum() > 0 else np.full(len(keys), 1.0 / len(keys))
        out.update(zip(keys, (float(t) * w).tolist(), strict=True))
    return out
