"""ReasoningBank: Q-learning over configuration changes, persisted as JSON.

A state is (what kind of model, which configuration it is compiled with): the pattern's dominant
op group and size bucket, the machine, the search space, and the configuration. An action is one
knob change. The reward of taking it is the measured log speed-up, log(t_before / t_after), so a
change that made things faster has positive reward, and Q learns the discounted best total:

    Q(s, a) ← Q(s, a) + α (r + γ·max_a' Q(s', a') − Q(s, a))        visits(s, a) += 1

The tuner asks `best_move(state)` for a change worth trying next, and `record` after measuring it.
Every `record` is written through an atomic rename (write temporary file, fsync, rename), so a
process killed at any moment leaves either the previous or the new table, never a torn one; a
record that returned is on disk.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LearningError
from .features import GROUPS, Pattern
from .storage import MAX_JSON_BYTES, atomic_write_json, locked, read_json

BANK = "reasoning_bank.json"
FORMAT = "wasm-torch-reasoning-bank/1"
MAX_ENTRIES = 200_000


@dataclass
class Entry:
    q: float
    visits: int


def pattern_class(pattern: Pattern) -> str:
    """Coarse kind of model: dominant op group and FLOP decade (log10, from the pattern's summary)."""
    dom = GROUPS[int(np.argmax(pattern.gates))]
    gflops = float(pattern.summary.get("gflops", 0.0) or 0.0)
    decade = math.floor(math.log10(gflops * 1e9)) if gflops > 0 else 0
    return f"{dom}:1e{decade}:{pattern.summary.get('machine', '')}"


def state_signature(pattern: Pattern, space_id: str, config_key: str) -> str:
    return f"{pattern_class(pattern)}|{space_id}|{config_key}"


def action_key(knob: str, value: Any) -> str:
    return json.dumps([knob, value], separators=(",", ":"))


class ReasoningBank:
    def __init__(
        self, path: str | Path, alpha: float = 0.3, gamma: float = 0.5, max_file_bytes: int = MAX_JSON_BYTES
    ) -> None:
        if not (0 < alpha <= 1 and 0 <= gamma < 1):
            raise LearningError(f"need 0 < alpha <= 1 and 0 <= gamma < 1, got alpha={alpha}, gamma={gamma}")
        self.path = Path(path).expanduser()
        self.alpha, self.gamma, self.max_file_bytes = alpha, gamma, max_file_bytes
        self.table: dict[str, dict[str, Entry]] = {}
        self.updates = 0
        self._lock = threading.Lock()
        if self.path.exists():
            self._load()

    # ---- persistence ------------------------------------------------------------------------------
    def _load(self) -> None:
        doc = read_json(self.path, "reasoning bank", self.max_file_bytes)
        bad = f"{self.path} is not a reasoning bank"
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise LearningError(f"{bad} (format is not {FORMAT!r}); it was left as it is: move it aside")
        entries = doc.get("entries")
        if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
            raise LearningError(f"{bad}: 'entries' must be a list of at most {MAX_ENTRIES}")
        for k, e in enumerate(entries):
            ok = (
                isinstance(e, dict)
                and isinstance(e.get("state"), str)
                and isinstance(e.get("action"), str)
                and isinstance(e.get("q"), int | float)
                and math.isfinite(e["q"])
                and isinstance(e.get("visits"), int)
                and e["visits"] >= 1
            )
            if not ok:
                raise LearningError(f"{bad}: entry {k} needs state, action (text), finite q, visits >= 1")
            self.table.setdefault(e["state"], {})[e["action"]] = Entry(float(e["q"]), int(e["visits"]))
        self.updates = int(doc.get("updates", 0)) if isinstance(doc.get("updates", 0), int) else 0

    def save(self) -> None:
        entries = [
            {"state": s, "action": a, "q": e.q, "visits": e.visits}
            for s, acts in self.table.items()
            for a, e in acts.items()
        ]
        atomic_write_json(
            self.path,
            {"format": FORMAT, "alpha": self.alpha, "gamma": self.gamma, "updates": self.updates, "entries": entries},
        )

    # ---- learning --------------------------------------------------------------------------------
    def value(self, state: str) -> float:
        acts = self.table.get(state)
        return max((e.q for e in acts.values()), default=0.0) if acts else 0.0

    def record(self, state: str, action: str, reward: float, next_state: str) -> Entry:
        """One Q-learning update; returns after the table is on disk."""
        if not math.isfinite(reward):
            raise LearningError(f"reward must be finite, got {reward!r}")
        with self._lock, locked(self.path.parent):
            if self.path.exists():  # another process may have learned meanwhile: start from disk
                self.table.clear()
                self._load()
            e = self.table.setdefault(state, {}).get(action) or Entry(0.0, 0)
            target = reward + self.gamma * max(0.0, self.value(next_state))
            e = Entry(e.q + self.alpha * (target - e.q), e.visits + 1)
            self.table[state][action] = e
            self.updates += 1
            if sum(len(a) for a in self.table.values()) > MAX_ENTRIES:
                self._evict()
            self.save()
            return e

    def _evict(self) -> None:
        """Drop the least-visited, lowest-q entries beyond the cap."""
        flat = sorted(
            ((e.visits, e.q, s, a) for s, acts in self.table.items() for a, e in acts.items()), reverse=True
        )
        keep = flat[: MAX_ENTRIES * 9 // 10]
        self.table = {}
        for visits, q, s, a in keep:
            self.table.setdefault(s, {})[a] = Entry(q, visits)

    def best_move(self, state: str, min_q: float = 0.0) -> tuple[str, Entry] | None:
        """The action with the highest q above `min_q` in this state, if any."""
        acts = self.table.get(state, {})
        if not acts:
            return None
        a = max(acts, key=lambda k: acts[k].q)
        return (a, acts[a]) if acts[a].q > min_q else None

    def __len__(self) -> int:
        return sum(len(a) for a in self.table.values())
