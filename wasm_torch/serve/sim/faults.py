"""Fault injection for chaos tests and recovery benchmarks: wrap any model (fake or compiled)
and make chosen calls trap, hit the deadline, exhaust memory, hang, run slowly or kill their
worker thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from wasm_torch.errors import DeadlineExceeded, MemoryLimitError, TrapError
from wasm_torch.serve.replica import current_replica

Inputs = Mapping[str, np.ndarray]


class WorkerKilled(BaseException):
    """Escapes every `except Exception`: the worker thread dies as if killed."""


@dataclass
class Rule:
    action: str  # trap | deadline | oom | hang | slow | kill
    times: int | None = 1  # how many calls it hits (None = until removed)
    replica: int | None = None  # only calls on this replica
    when: Callable[[Inputs], bool] | None = None
    seconds: float = 0.0  # for deadline / hang / slow


class FaultPlan:
    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.fired: list[tuple[str, int | None]] = []
        self.fired_at: list[float] = []
        self._lock = threading.Lock()

    def add(self, action: str, **kw: Any) -> Rule:
        rule = Rule(action, **kw)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def take(self, inputs: Inputs) -> Rule | None:
        rid = current_replica()
        with self._lock:
            for rule in self.rules:
                if rule.replica is not None and rule.replica != rid:
                    continue
                if rule.when is not None and not rule.when(inputs):
                    continue
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                self.fired.append((rule.action, rid))
                self.fired_at.append(time.monotonic())
                return rule
        return None


class FaultyModel:
    """Delegates to `inner` unless the plan says otherwise."""

    def __init__(self, inner: Any, plan: FaultPlan) -> None:
        self.inner, self.plan = inner, plan
        self.inputs, self.outputs = inner.inputs, inner.outputs

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    def __call__(self, *arrays: np.ndarray) -> Any:
        out = self.run(dict(zip([s.name for s in self.inputs], arrays, strict=True)))
        values = tuple(out.values())
        return values[0] if len(values) == 1 else values

    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        rule = self.plan.take(inputs)
        if rule is None:
            return self.inner.run(inputs)
        if rule.action == "trap":
            raise TrapError("wasm trap: unreachable (injected)")
        if rule.action == "oom":
            raise MemoryLimitError("memory.grow beyond the instance's memory cap (injected)")
        if rule.action == "deadline":
            time.sleep(rule.seconds)
            raise DeadlineExceeded(f"call exceeded its {rule.seconds:g} s deadline (injected)")
        if rule.action == "hang":
            time.sleep(rule.seconds)  # not interruptible: only the watchdog notices
            return self.inner.run(inputs)
        if rule.action == "slow":
            time.sleep(rule.seconds)
            return self.inner.run(inputs)
        if rule.action == "kill":
            raise WorkerKilled("worker killed (injected)")
        raise ValueError(f"unknown fault action {rule.action!r}")
