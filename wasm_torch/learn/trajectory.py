"""The trajectory ring buffer: the last 10,000 (pattern, configuration, measured latency) outcomes.

FIFO: when full, the oldest outcome is overwritten (RuVector's SONA buffer drops *new* entries when
full, so it stops learning; ours keeps the most recent). Every entry also keeps the latency of the
default configuration measured in the same run (`baseline_s`), because only that ratio — the gain —
is comparable across runs on a noisy machine.

Stored as numpy arrays (vectors, gates, latencies) plus short strings (pattern key, configuration
as canonical JSON, search-space id), so a snapshot is an npz file that loads with allow_pickle=False.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import LearningError
from .features import DIM, GROUPS

CAPACITY = 10_000


def config_json(config: dict[str, Any]) -> str:
    """Canonical text of a configuration (sorted keys): equal configurations, equal strings."""
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise LearningError(f"a configuration must be JSON (str/int/float/bool/None/lists): {e}") from e


@dataclass(frozen=True)
class Trajectory:
    vector: np.ndarray
    gates: np.ndarray
    key: str
    config: dict[str, Any]
    latency_s: float
    baseline_s: float
    space: str
    time: float

    @property
    def gain(self) -> float:
        """Speed-up over the default configuration measured in the same run (>1 = faster)."""
        return self.baseline_s / self.latency_s


def check_outcome(latency_s: float, baseline_s: float) -> None:
    for name, v in (("latency_s", latency_s), ("baseline_s", baseline_s)):
        if not (isinstance(v, int | float) and np.isfinite(v) and 0 < v < 1e6):
            raise LearningError(f"{name} must be a finite number of seconds in (0, 1e6), got {v!r}")


class TrajectoryBuffer:
    """Fixed-capacity FIFO of trajectories; `total` counts every one ever appended."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise LearningError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.vectors = np.zeros((capacity, DIM), dtype=np.float32)
        self.gates = np.zeros((capacity, len(GROUPS)), dtype=np.float32)
        self.latency = np.zeros(capacity, dtype=np.float64)
        self.baseline = np.zeros(capacity, dtype=np.float64)
        self.times = np.zeros(capacity, dtype=np.float64)
        self.keys: list[str] = [""] * capacity
        self.configs: list[str] = [""] * capacity
        self.spaces: list[str] = [""] * capacity
        self.head = 0  # next slot to write
        self.count = 0
        self.total = 0

    def __len__(self) -> int:
        return self.count

    def append(
        self,
        vector: np.ndarray,
        gates: np.ndarray,
        key: str,
        config: dict[str, Any] | str,
        latency_s: float,
        baseline_s: float,
        space: str,
        time: float,
    ) -> None:
        check_outcome(latency_s, baseline_s)
        vector = np.asarray(vector, dtype=np.float32)
        gates = np.asarray(gates, dtype=np.float32)
        if vector.shape != (DIM,) or gates.shape != (len(GROUPS),):
            raise LearningError(
                f"a pattern is float32[{DIM}] with gates float32[{len(GROUPS)}], "
                f"got {list(vector.shape)} and {list(gates.shape)}"
            )
        if not (np.all(np.isfinite(vector)) and np.all(np.isfinite(gates))):
            raise LearningError("a pattern vector has NaN or infinite values")
        i = self.head
        self.vectors[i], self.gates[i] = vector, gates
        self.latency[i], self.baseline[i], self.times[i] = latency_s, baseline_s, time
        self.keys[i] = str(key)
        self.configs[i] = config if isinstance(config, str) else config_json(config)
        self.spaces[i] = str(space)
        self.head = (i + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        self.total += 1

    def order(self) -> np.ndarray:
        """Slot indices from oldest to newest."""
        start = (self.head - self.count) % self.capacity
        return (start + np.arange(self.count)) % self.capacity

    def __iter__(self) -> Iterator[Trajectory]:
        for i in self.order():
            yield self.at(int(i))

    def at(self, i: int) -> Trajectory:
        return Trajectory(
            self.vectors[i],
            self.gates[i],
            self.keys[i],
            json.loads(self.configs[i]),
            float(self.latency[i]),
            float(self.baseline[i]),
            self.spaces[i],
            float(self.times[i]),
        )

    # ---- snapshot -----------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        idx = self.order()

        def strings(xs: list[str]) -> np.ndarray:
            return np.array([xs[i] for i in idx], dtype=str) if len(idx) else np.zeros(0, dtype="<U1")

        return {
            "vectors": self.vectors[idx],
            "gates": self.gates[idx],
            "latency": self.latency[idx],
            "baseline": self.baseline[idx],
            "times": self.times[idx],
            "keys": strings(self.keys),
            "configs": strings(self.configs),
            "spaces": strings(self.spaces),
            "total": np.array([self.total], dtype=np.int64),
        }

    ARRAYS: ClassVar[dict[str, tuple[str, int]]] = {  # name -> (dtype kinds, rank) in a snapshot
        "vectors": ("f", 2),
        "gates": ("f", 2),
        "latency": ("f", 1),
        "baseline": ("f", 1),
        "times": ("f", 1),
        "keys": ("U", 1),
        "configs": ("U", 1),
        "spaces": ("U", 1),
        "total": ("i", 1),
    }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], capacity: int = CAPACITY) -> TrajectoryBuffer:
        n = len(a["latency"])
        if a["vectors"].shape != (n, DIM) or a["gates"].shape != (n, len(GROUPS)):
            raise LearningError(
                f"trajectory arrays disagree: {n} latencies, vectors {list(a['vectors'].shape)}, "
                f"gates {list(a['gates'].shape)} (expected [n, {DIM}] and [n, {len(GROUPS)}])"
            )
        for k in ("baseline", "times", "keys", "configs", "spaces"):
            if len(a[k]) != n:
                raise LearningError(f"trajectory array {k!r} has {len(a[k])} entries, expected {n}")
        buf = cls(capacity)
        for i in range(max(0, n - capacity), n):  # a smaller capacity keeps the newest
            try:
                json.loads(str(a["configs"][i]))
            except ValueError as e:
                raise LearningError(f"trajectory {i}: configuration is not JSON: {e}") from e
            buf.append(
                a["vectors"][i],
                a["gates"][i],
                str(a["keys"][i]),
                str(a["configs"][i]),
                float(a["latency"][i]),
                float(a["baseline"][i]),
                str(a["spaces"][i]),
                float(a["times"][i]),
            )
        buf.total = max(buf.total, int(a["total"][0]) if len(a["total"]) else n)
        return buf
