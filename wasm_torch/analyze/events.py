"""A small typed in-process event bus, and the events the partitioner publishes on it.

    bus = EventBus()
    off = bus.subscribe(TensionEvent, lambda e: print(e.tension))
    bus.publish(TensionEvent(...))      # handlers run in subscription order, on the publisher's thread
    off()                               # unsubscribe

Delivery is synchronous and in order. An event published from inside a handler is queued and
delivered after the current one has reached every subscriber (no re-entrant recursion), so all
subscribers see events in the same order. A handler that raises does not stop the others: its error
is recorded in `bus.errors` (bounded) and returned by `publish`, never swallowed silently.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

E = TypeVar("E")

MAX_ERRORS = 100


@dataclass(frozen=True)
class TensionEvent:
    """The deployed partition of a graph, re-evaluated under the current costs and bindings."""

    graph: str  # graph fingerprint
    partition: str  # partition id (its boundaries' fingerprint)
    tension: float  # crossing bytes / total traffic of the deployed partition
    crossing_bytes: int
    total_traffic: int
    best_tension: float  # tension of the best partition under the current conditions
    feasible: bool  # the deployed partition still meets the balance / memory constraints
    imbalance: float  # max |stage cost − total/k| / (total/k) of the deployed partition
    boundary_ops: tuple[str, ...]  # nodes next to a deployed boundary (producers and readers)


@dataclass(frozen=True)
class PartitionChanged:
    """A new partition was deployed for a graph."""

    graph: str
    old: str | None  # previous partition id
    new: str
    changed_stages: tuple[int, ...]  # stages whose node sets differ from the previous partition
    reason: str
    partition: Any = field(compare=False, repr=False)  # the partition.Partition


@dataclass(frozen=True)
class TuningBudgetRequest:
    """Ask the autotuner (wasm_torch/learn) to spend more tuning budget on these ops."""

    graph: str
    ops: dict[str, float]  # node key -> share of the extra budget (sums to 1)
    budget: float  # extra tuning trials (or seconds) requested in total
    reason: str


@dataclass(frozen=True)
class HandlerError:
    event: str
    handler: str
    error: str


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[type, list[Callable[[Any], None]]] = {}
        self._lock = threading.RLock()
        self._queue: deque[Any] = deque()
        self._delivering = False
        self.errors: deque[HandlerError] = deque(maxlen=MAX_ERRORS)
        self.published = 0

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        if not isinstance(kind, type):
            raise TypeError(f"subscribe needs an event class, got {kind!r}")
        if not callable(handler):
            raise TypeError(f"handler for {kind.__name__} is not callable: {handler!r}")
        with self._lock:
            self._subs.setdefault(kind, []).append(handler)

        def unsubscribe() -> None:
            with self._lock:
                hs = self._subs.get(kind, [])
                if handler in hs:
                    hs.remove(handler)

        return unsubscribe

    def subscribers(self, kind: type) -> int:
        with self._lock:
            return len(self._subs.get(kind, []))

    def publish(self, event: Any) -> list[HandlerError]:
        """Deliver `event` to the subscribers of its class (and of its base classes)."""
        failures: list[HandlerError] = []
        with self._lock:
            self._queue.append(event)
            self.published += 1
            if self._delivering:
                return failures  # delivered by the outer publish, after the current event
            self._delivering = True
            try:
                while self._queue:
                    ev = self._queue.popleft()
                    handlers = [h for k in type(ev).__mro__ for h in self._subs.get(k, [])]
                    for h in handlers:
                        try:
                            h(ev)
                        except Exception as e:  # a subscriber's bug must not stop the others
                            err = HandlerError(type(ev).__name__, getattr(h, "__qualname__", repr(h)),
                                               f"{type(e).__name__}: {e}")
                            self.errors.append(err)
                            failures.append(err)
            finally:
                self._delivering = False
        return failures
