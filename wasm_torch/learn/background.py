"""Background learning: consolidation of the pattern memory and cost models in bounded chunks.

    learner = BackgroundLearner(PatternMemory(folder), spaces=[CompileSpace()])
    learner.step()            # one chunk; returns what it did and the CPU time it took
    learner.start(60.0)       # or a daemon thread calling step() every 60 s (gate: when allowed)
    learner.stop()

One round of consolidation is a sequence of chunks, each bounded so a caller (the circadian gate in
`wasm-torch serve`) can stop between any two:

    fold          PatternMemory.background_learn(): journal -> snapshot, k-means++ re-cluster
    fit:<space>   `fit_epochs` epochs of the cost model's base (full-batch Adam) on the buffer,
                  repeated `fit_chunks` times per space
    ewc:<space>   EWC: the adapters' Fisher information on the buffer, anchor at the current
                  adapters; the model is saved
    idle          nothing new since the last round

A round starts only when outcomes were recorded since the previous one (by any process).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LearningError
from .costmodel import Batch, MicroLoRACostModel
from .memory import PatternMemory
from .space import SearchSpace
from .tuner import cost_model_path, load_cost_model


@dataclass
class StepReport:
    did: str
    cpu_s: float
    wall_s: float
    info: dict[str, Any] = field(default_factory=dict)


class BackgroundLearner:
    def __init__(
        self,
        memory: PatternMemory,
        spaces: Iterable[SearchSpace] = (),
        fit_epochs: int = 50,
        fit_chunks: int = 4,
        min_rows: int = 8,
    ) -> None:
        if fit_epochs < 1 or fit_chunks < 1:
            raise LearningError("fit_epochs and fit_chunks must be >= 1")
        self.memory = memory
        self.spaces = {s.id: s for s in spaces}
        self.fit_epochs, self.fit_chunks, self.min_rows = fit_epochs, fit_chunks, min_rows
        self._plan: list[str] = []
        self._seen: tuple[int, int] | None = None  # memory signature after the last fold
        self._models: dict[str, MicroLoRACostModel] = {}
        self._batches: dict[str, Batch] = {}
        self.history: list[StepReport] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # ---- one chunk ------------------------------------------------------------------------------------
    def step(self) -> StepReport:
        with self._lock:
            c0, w0 = time.thread_time(), time.perf_counter()
            did, info = self._step()
            rep = StepReport(did, time.thread_time() - c0, time.perf_counter() - w0, info)
            self.history.append(rep)
            if len(self.history) > 10_000:
                del self.history[:5_000]
            return rep

    def _step(self) -> tuple[str, dict[str, Any]]:
        if not self._plan:
            if self._seen is not None and self._signature() == self._seen:
                return "idle", {}
            self._plan = ["fold"]
            for sid in self.spaces:
                self._plan += [f"fit:{sid}"] * self.fit_chunks + [f"ewc:{sid}"]
        task = self._plan.pop(0)
        if task == "fold":
            info = self.memory.background_learn()
            self._seen = self._signature()  # what this round learns from
            self._batches = {sid: self._batch(sp) for sid, sp in self.spaces.items()}
            return "fold", info
        kind, sid = task.split(":", 1)
        batch = self._batches.get(sid)
        if batch is None or len(batch) < self.min_rows:
            self._plan = [t for t in self._plan if not t.endswith(":" + sid)]
            return "skip", {"space": sid, "rows": 0 if batch is None else len(batch)}
        model = self._model(sid)
        if kind == "fit":
            loss = model.fit(batch, epochs=self.fit_epochs)
            return "fit", {"space": sid, "rows": len(batch), "loss": loss}
        model.consolidate(batch)
        model.save(cost_model_path(self.memory.folder, self.spaces[sid]))
        self._models.pop(sid, None)  # reload next round: a tuner may have adapted it meanwhile
        return "ewc", {"space": sid, "rows": len(batch), "consolidations": model.consolidations}

    def _signature(self) -> tuple[int, int]:
        """Changes when an outcome is recorded, by this process (buffer) or another (journal)."""
        j = self.memory.journal.path
        return self.memory.buffer.total, j.stat().st_size if j.exists() else 0

    def _model(self, sid: str) -> MicroLoRACostModel:
        if sid not in self._models:
            self._models[sid] = load_cost_model(self.memory.folder, self.spaces[sid])
        return self._models[sid]

    def _batch(self, space: SearchSpace) -> Batch:
        """Cost-model rows from the trajectories recorded under `space`: y = log(latency / default)."""
        b = self.memory.buffer
        rows, xs = [], []
        for i in b.order():
            if b.spaces[i] != space.id:
                continue
            try:
                enc = space.encode(_json(b.configs[i]))
            except LearningError:
                continue
            rows.append(int(i))
            xs.append(np.concatenate([b.vectors[i], enc]))
        if not rows:
            return Batch(np.zeros((0, 1)), np.zeros((0, 1)), np.zeros(0))
        idx = np.array(rows)
        return Batch(np.stack(xs), b.gates[idx], np.log(b.latency[idx] / b.baseline[idx]))

    # ---- a thread ---------------------------------------------------------------------------------------
    def start(self, interval_s: float, allowed: Callable[[], bool] | None = None) -> None:
        """Call step() every interval_s on a daemon thread, when `allowed()` says so."""
        if self._thread is not None:
            raise LearningError("the background learner is already running")
        if interval_s <= 0:
            raise LearningError(f"interval_s must be > 0, got {interval_s}")
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                if allowed is None or allowed():
                    try:
                        self.step()
                    except LearningError as e:  # a damaged file: report and keep the server up
                        self.history.append(StepReport("error", 0.0, 0.0, {"error": str(e)}))

        self._thread = threading.Thread(target=loop, name="wasm-torch-learn", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _json(text: str) -> dict[str, Any]:
    import json

    return json.loads(text)
