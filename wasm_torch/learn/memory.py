"""Pattern memory (SONA): what was fast for which model on this machine, and what to try first.

    mem = PatternMemory("~/.cache/wasm_torch/learn")          # opens (or creates) the folder
    for s in mem.pre_query(pattern, k=3): ...                  # suggested starting configurations
    mem.post_query(pattern, config, latency_s, baseline_s)    # one measured outcome, fsynced
    mem.background_learn()                                     # fold the journal, re-cluster

Files in the folder (all pickle-free):

    trajectories.npz   snapshot of the 10,000-entry trajectory ring buffer (trajectory.py)
    journal.jsonl      outcomes recorded since the snapshot, one fsynced JSON line each
    index.npz          the k-means++ pattern index over distinct patterns (index.py)

`pre_query` ranks configurations by the distance-weighted mean log-gain they achieved on the
nearest stored patterns (a configuration a neighbour never tried counts as no gain), so a
configuration that helped several similar models ranks above one that helped a single distant
one. Each neighbour's median log-gain for a configuration measured n times is shrunk by n/(n+1)
towards no gain: on a noisy machine a single lucky trial should not outrank a gain that was
measured again (the tuner records its confirmation runs too). Patterns recorded since the last `background_learn` are searched exactly, so a fresh
outcome is useful at once, before any re-clustering.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LearningError
from .features import Pattern
from .index import PatternIndex
from .storage import Journal, atomic_write_npz, locked, read_npz
from .trajectory import CAPACITY, TrajectoryBuffer, check_outcome, config_json

SNAPSHOT, JOURNAL, INDEX = "trajectories.npz", "journal.jsonl", "index.npz"
TOP_CONFIGS = 8  # best configurations remembered per pattern


@dataclass(frozen=True)
class Suggestion:
    config: dict[str, Any]
    expected_gain: float  # distance-weighted geometric mean gain over the neighbours
    support: int  # how many neighbour patterns measured this configuration
    distance: float  # distance to the nearest neighbour that measured it
    source: list[str] = field(default_factory=list)  # neighbour pattern keys


def default_folder() -> Path:
    from ..config import settings

    return settings().cache_dir / "learn"


class PatternMemory:
    def __init__(self, folder: str | Path | None = None, capacity: int = CAPACITY, seed: int = 0) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_folder()
        self.seed = seed
        self._lock = threading.RLock()
        self.journal = Journal(self.folder / JOURNAL)
        with locked(self.folder):
            self.buffer = self._load_snapshot(capacity)
            for k, rec in enumerate(self.journal.read()):
                self._apply(rec, f"{self.journal.path} line {k + 1}")
        self.index: PatternIndex | None = None
        self.index_built_from = 0
        if (self.folder / INDEX).exists():
            self.index, self.index_built_from = PatternIndex.load(self.folder / INDEX)
        self._rebuild_tables()

    # ---- loading ------------------------------------------------------------------------------
    def _load_snapshot(self, capacity: int) -> TrajectoryBuffer:
        path = self.folder / SNAPSHOT
        if not path.exists():
            return TrajectoryBuffer(capacity)
        try:
            return TrajectoryBuffer.from_arrays(read_npz(path, TrajectoryBuffer.ARRAYS), capacity)
        except LearningError as e:
            if str(path) in str(e):
                raise
            raise LearningError(f"{path}: {e}. It was left as it is: move it aside to start afresh.") from e

    def _apply(self, rec: dict[str, Any], where: str) -> None:
        try:
            self.buffer.append(
                np.asarray(rec["vector"], dtype=np.float32),
                np.asarray(rec["gates"], dtype=np.float32),
                str(rec["key"]),
                rec["config"] if isinstance(rec["config"], dict) else _bad("config is not an object"),
                float(rec["latency_s"]),
                float(rec["baseline_s"]),
                str(rec.get("space", "")),
                float(rec.get("time", 0.0)),
            )
        except (KeyError, TypeError, ValueError, LearningError) as e:
            raise LearningError(
                f"{where}: not a trajectory record ({e}). The file was left as it is: move it aside "
                "to start afresh."
            ) from e

    def _rebuild_tables(self) -> None:
        """Per pattern key: its latest vector and its configurations' gains."""
        self._vectors: dict[str, np.ndarray] = {}
        # pattern key -> (search-space id, configuration JSON) -> gains measured
        self._gains: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
        for i in self.buffer.order():
            self._note(int(i))
        indexed = set(self.index.keys) if self.index is not None else set()
        self._pending = [k for k in self._vectors if k not in indexed]

    def _note(self, i: int) -> None:
        b = self.buffer
        key = b.keys[i]
        self._vectors[key] = b.vectors[i]
        self._gains[key][(b.spaces[i], b.configs[i])].append(float(b.baseline[i] / b.latency[i]))

    # ---- the three SONA calls ------------------------------------------------------------------
    def post_query(
        self,
        pattern: Pattern,
        config: dict[str, Any],
        latency_s: float,
        baseline_s: float,
        space: str = "",
    ) -> None:
        """Record one measured outcome; returns once it is on disk."""
        check_outcome(latency_s, baseline_s)
        rec = {
            "vector": [float(x) for x in pattern.vector],
            "gates": [float(x) for x in pattern.gates],
            "key": pattern.key,
            "config": config,
            "latency_s": float(latency_s),
            "baseline_s": float(baseline_s),
            "space": space,
            "time": time.time(),
        }
        config_json(config)  # validates before anything is written
        with self._lock:
            with locked(self.folder):
                self.journal.append(rec)
            self._apply(rec, "post_query")
            i = (self.buffer.head - 1) % self.buffer.capacity
            self._note(i)
            if pattern.key not in self._pending and (self.index is None or pattern.key not in self.index.keys):
                self._pending.append(pattern.key)

    def pre_query(
        self, pattern: Pattern, k: int = 3, space: str | None = None, neighbours: int = 5, exclude: str = ""
    ) -> list[Suggestion]:
        """Up to k configurations to try first for `pattern`, best first (empty when memory is).

        space: only configurations recorded for this search-space id. exclude: a pattern key to
        ignore (leave-one-out evaluation)."""
        with self._lock:
            near = self._neighbours(pattern.vector, neighbours + (1 if exclude else 0))
            near = [(key, d) for key, d in near if key != exclude][:neighbours]
            if not near:
                return []
            scale = max(1e-3, statistics.median(d for _, d in near))
            scores: dict[str, float] = defaultdict(float)
            support: dict[str, list[tuple[str, float]]] = defaultdict(list)
            wsum = 0.0
            for key, d in near:
                w = math.exp(-d / scale)
                wsum += w
                for (sp, cfg), gains in self._gains[key].items():
                    if space is not None and sp != space:
                        continue
                    # shrunk towards "no gain" by n/(n+1): one lucky measurement counts half
                    n = len(gains)
                    scores[cfg] += w * math.log(statistics.median(gains)) * n / (n + 1)
                    support[cfg].append((key, d))
            ranked = sorted(scores, key=lambda c: scores[c] / wsum, reverse=True)[:k]
            return [
                Suggestion(
                    json.loads(c),
                    math.exp(scores[c] / wsum),
                    len(support[c]),
                    min(d for _, d in support[c]),
                    [key for key, _ in support[c]],
                )
                for c in ranked
            ]

    def _neighbours(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        v = np.asarray(vector, dtype=np.float32)
        found: dict[str, float] = {}
        if self.index is not None and len(self.index):
            for nb in self.index.query(v, n):
                if nb.key in self._vectors:  # the pattern may have left the ring buffer
                    found[nb.key] = nb.distance
        if self._pending:
            pv = np.stack([self._vectors[k] for k in self._pending])
            d = np.linalg.norm(pv - v, axis=1)
            for j in np.argsort(d)[:n]:
                found[self._pending[j]] = float(d[j])
        return sorted(found.items(), key=lambda kv: kv[1])[:n]

    def background_learn(self) -> dict[str, Any]:
        """Consolidate: fold the journal into the snapshot, re-cluster the distinct patterns."""
        t0 = time.perf_counter()
        with self._lock, locked(self.folder):
            # another process may have appended outcomes: take the journal as it is on disk now
            on_disk = self.journal.read()
            fresh = TrajectoryBuffer(self.buffer.capacity)
            snap = self.folder / SNAPSHOT
            if snap.exists():
                fresh = TrajectoryBuffer.from_arrays(read_npz(snap, TrajectoryBuffer.ARRAYS), self.buffer.capacity)
            self.buffer = fresh
            for k, rec in enumerate(on_disk):
                self._apply(rec, f"{self.journal.path} line {k + 1}")
            atomic_write_npz(snap, self.buffer.to_arrays())
            self.journal.clear()
            self._vectors = {}
            self._rebuild_tables()
            keys = list(self._vectors)
            vectors = np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)
            self.index = PatternIndex.build(keys, vectors, self.seed) if keys else None
            self.index_built_from = self.buffer.total
            if self.index is not None:
                self.index.save(self.folder / INDEX, self.index_built_from)
            self._pending = []
        return {
            "trajectories": len(self.buffer),
            "patterns": len(keys),
            "clusters": 0 if self.index is None else len(self.index.centroids),
            "folded": len(on_disk),
            "ms": round((time.perf_counter() - t0) * 1e3, 1),
        }

    # ---- reading --------------------------------------------------------------------------------
    def patterns(self) -> list[str]:
        return list(self._vectors)

    def best(self, key: str, space: str | None = None) -> tuple[dict[str, Any], float] | None:
        """The configuration with the highest median gain measured for a pattern key."""
        gains = {
            c: float(np.median(g))
            for (sp, c), g in self._gains.get(key, {}).items()
            if space is None or sp == space
        }
        if not gains:
            return None
        c = max(gains, key=gains.__getitem__)
        return json.loads(c), gains[c]

    def __len__(self) -> int:
        return len(self.buffer)


def _bad(why: str) -> Any:
    raise ValueError(why)
