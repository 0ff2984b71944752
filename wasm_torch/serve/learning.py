"""Background learning in `wasm-torch serve`, gated by the circadian controller.

With `ServeSettings(learn_memory=folder)` the server consolidates the pattern memory and cost
models in that folder (wasm_torch.learn.background.BackgroundLearner) while traffic is low:

    every tick_s:  requests since the last tick -> CircadianController.record(); update(phase)
                   if Gate(kind="consolidate", period_s).due(): learner.step()   (one bounded chunk)

"consolidate" jobs run only in the dusk and rest phases (circadian.py), so no consolidation chunk
starts while the server is busy; a chunk already running finishes (chunks are bounded: one
re-cluster, or `fit_epochs` epochs of a small cost model). The request rate comes from the app's
own Prometheus counter, so nothing is added to the request path.

This module is the only bridge from serve/ to learn/, and imports learn/ only when learning is
switched on. `LearningLoop` takes any object with a `step()` (tests and the benchmark give it a
real BackgroundLearner; `Stepper` is the seam).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from wasm_torch.serve.circadian import CircadianController, CircadianSettings, Gate, Phase
from wasm_torch.serve.clock import Clock, monotonic


class Stepper(Protocol):
    def step(self) -> Any: ...


@dataclass
class PhaseUse:
    steps: int = 0
    cpu_s: float = 0.0
    seconds: float = 0.0  # time spent in the phase (ticks)


@dataclass
class LearningStats:
    by_phase: dict[str, PhaseUse] = field(default_factory=lambda: {p.value: PhaseUse() for p in Phase})
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "by_phase": {k: {"steps": v.steps, "cpu_s": round(v.cpu_s, 4), "seconds": round(v.seconds, 1)}
                         for k, v in self.by_phase.items()},
            "errors": self.errors[-10:],
        }


class LearningLoop:
    def __init__(
        self,
        learner: Stepper,
        requests_total: Callable[[], float],
        settings: CircadianSettings | None = None,
        clock: Clock = monotonic,
        period_s: float = 60.0,
        tick_s: float = 1.0,
        max_burst: int = 1,
        kind: str = "consolidate",
    ) -> None:
        if tick_s <= 0:
            raise ValueError(f"tick_s must be > 0, got {tick_s}")
        self.learner, self.requests_total, self.clock, self.tick_s = learner, requests_total, clock, tick_s
        self.controller = CircadianController(settings, clock)
        # "consolidate": dusk and rest only (the server's setting); "always": ungated (for comparison)
        self.gate = Gate(self.controller, period_s, kind=kind, max_burst=max_burst)
        self.stats = LearningStats()
        self._last_total = requests_total()
        self._last_t = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: float | None = None) -> int:
        """Fold the requests seen since the last tick into the controller; run due chunks."""
        now = self.clock() if now is None else now
        total = self.requests_total()
        self.controller.record(max(0.0, total - self._last_total))
        self._last_total = total
        phase = self.controller.update(now)
        self.stats.by_phase[phase.value].seconds += max(0.0, now - self._last_t)
        self._last_t = now
        ran = 0
        for _ in range(self.gate.due(now)):
            c0 = time.thread_time()
            try:
                self.learner.step()
            except Exception as e:  # learning must never take the server down; keep the reason
                self.stats.errors.append(f"{type(e).__name__}: {e}")
            use = self.stats.by_phase[phase.value]
            use.steps += 1
            use.cpu_s += time.thread_time() - c0
            ran += 1
        return ran

    def start(self) -> LearningLoop:
        def loop() -> None:
            while not self._stop.wait(self.tick_s):
                self.tick()

        self._thread = threading.Thread(target=loop, name="wasm-torch-learning", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def counter_total(counter: Any) -> float:
    """Sum of a prometheus_client Counter over all its label sets."""
    return float(sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total")))


def start_learning(server: Any, settings: Any) -> LearningLoop | None:
    """The app's hook: a running LearningLoop when settings.learn_memory is set, else None."""
    folder = getattr(settings, "learn_memory", None)
    if folder is None:
        return None
    from wasm_torch.learn.background import BackgroundLearner
    from wasm_torch.learn.compile_space import CompileSpace
    from wasm_torch.learn.memory import PatternMemory

    learner = BackgroundLearner(PatternMemory(folder), spaces=[CompileSpace()])
    return LearningLoop(
        learner,
        lambda: counter_total(server.metrics.requests),
        None,  # CircadianSettings(): load-driven phases
        server.clock,
        period_s=settings.learn_period_s,
    ).start()
