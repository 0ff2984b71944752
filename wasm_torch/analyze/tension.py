"""Subscribers to the partition tension: each does one real thing when the cut gets strained.

- `RepartitionOnTension`: deploys the session's best partition when the deployed one no longer
  meets its constraints, or when its tension passes a threshold and a lower-tension partition exists.
  Whoever compiles stages subscribes to `PartitionChanged` (compile_pipeline recompiles only
  `changed_stages`).
- `PartitionCache`: partitions by (graph, options), what `compile(..., stages=k)` reuses instead of
  solving again; a strained or infeasible tension event for a graph drops that graph's entries, and a
  `PartitionChanged` stores the newly deployed one.
- `BoundaryBudget`: on every new deployment (and on strained tension) asks the autotuner for more
  tuning budget on the ops next to the boundaries, weighted by the temporal score (btsp.py) when one
  is given. The autotuner (wasm_torch/learn) subscribes to `TuningBudgetRequest`; a `TuningBudgetSink`
  can be attached directly too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .btsp import TemporalScore
from .events import EventBus, PartitionChanged, TensionEvent, TuningBudgetRequest
from .incremental import PartitionSession, partition_id
from .partition import Partition, PartitionOptions


def _check_threshold(threshold: float) -> None:
    if not 0 <= threshold <= 1:
        raise ValueError(f"tension threshold must be in [0, 1] (a share of traffic), got {threshold}")


class RepartitionOnTension:
    def __init__(self, session: PartitionSession, threshold: float):
        _check_threshold(threshold)
        self.session, self.threshold = session, threshold
        self.repartitions = 0
        self.unsubscribe = session.bus.subscribe(TensionEvent, self)

    def __call__(self, e: TensionEvent) -> None:
        s = self.session
        if e.graph != s.fingerprint or s.best is None:
            return
        best_id = partition_id(s.best, s.dag)
        if best_id == e.partition:
            return
        if not e.feasible:
            reason = "deployed partition violates its constraints under the new costs"
        elif e.tension > self.threshold and e.best_tension < e.tension:
            reason = f"tension {e.tension:.3f} > threshold {self.threshold:.3f} (best {e.best_tension:.3f})"
        else:
            return
        self.repartitions += 1
        s.deploy(s.best, reason)


def options_key(o: PartitionOptions) -> tuple:
    return (o.stages, o.tolerance, o.memory_cap, o.shared_weights)


@dataclass
class PartitionCache:
    """In-process cache of deployed partitions: (graph fingerprint, options) -> Partition."""

    threshold: float = 1.0  # tension above which a graph's cached partitions are dropped
    entries: dict[tuple[str, tuple], Partition] = field(default_factory=dict)
    invalidations: int = 0

    def __post_init__(self) -> None:
        _check_threshold(self.threshold)

    def get(self, graph: str, options: PartitionOptions) -> Partition | None:
        return self.entries.get((graph, options_key(options)))

    def put(self, graph: str, p: Partition) -> None:
        self.entries[(graph, options_key(p.options))] = p

    def invalidate(self, graph: str) -> int:
        stale = [k for k in self.entries if k[0] == graph]
        for k in stale:
            del self.entries[k]
        self.invalidations += len(stale)
        return len(stale)

    def attach(self, bus: EventBus) -> Callable[[], None]:
        offs = [bus.subscribe(TensionEvent, self._on_tension), bus.subscribe(PartitionChanged, self._on_changed)]

        def detach() -> None:
            for off in offs:
                off()

        return detach

    def _on_tension(self, e: TensionEvent) -> None:
        if not e.feasible or e.tension > self.threshold:
            self.invalidate(e.graph)

    def _on_changed(self, e: PartitionChanged) -> None:
        self.put(e.graph, e.partition)


class TuningBudgetSink(Protocol):
    """What an autotuner implements to receive boundary-op budget directly."""

    def request_budget(self, graph: str, ops: dict[str, float], budget: float, reason: str) -> None: ...


class BoundaryBudget:
    def __init__(self, session: PartitionSession, budget: float, *, threshold: float = 1.0,
                 score: TemporalScore | None = None, sink: TuningBudgetSink | None = None):
        _check_threshold(threshold)
        if not budget > 0:
            raise ValueError(f"budget must be > 0, got {budget}")
        self.session, self.budget, self.threshold, self.score, self.sink = session, budget, threshold, score, sink
        self.requests: list[TuningBudgetRequest] = []
        bus = session.bus
        self._offs = [bus.subscribe(PartitionChanged, self._on_changed), bus.subscribe(TensionEvent, self._on_tension)]

    def _on_changed(self, e: PartitionChanged) -> None:
        if e.graph == self.session.fingerprint:
            self._request(self.session.boundary_ops(e.partition), f"new partition ({e.reason})")

    def _on_tension(self, e: TensionEvent) -> None:
        if e.graph == self.session.fingerprint and e.tension > self.threshold:
            self._request(e.boundary_ops, f"tension {e.tension:.3f} > {self.threshold:.3f}")

    def _request(self, ops: tuple[str, ...], reason: str) -> None:
        if not ops:
            return
        scores = self.score.scores() if self.score is not None else {}
        w = {k: scores.get(k, 0.0) for k in ops}
        if sum(w.values()) <= 0:
            w = dict.fromkeys(ops, 1.0)
        total = sum(w.values())
        shares = {k: v / total for k, v in w.items()}
        req = TuningBudgetRequest(self.session.fingerprint, shares, self.budget, reason)
        self.requests.append(req)
        self.session.bus.publish(req)
        if self.sink is not None:
            self.sink.request_budget(req.graph, req.ops, req.budget, req.reason)

    def close(self) -> None:
        for off in self._offs:
            off()
