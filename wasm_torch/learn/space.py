"""The search space: named knobs with finite choices, and the numeric encoding the cost model reads.

The tuner never invents knobs: a space is built from what the compile options expose
(`compile_space.py`), or given explicitly (tests plant one). A configuration is a dict
knob -> choice; missing knobs take their default. Choices are JSON scalars (str, int, float, bool,
None) so configurations can be stored as text and compared by value.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import LearningError

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Knob:
    name: str
    choices: tuple[Scalar, ...]
    default: Scalar

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise LearningError(f"a knob needs a non-empty name, got {self.name!r}")
        if len(self.choices) < 1:
            raise LearningError(f"knob {self.name!r} has no choices")
        for c in self.choices:
            if not isinstance(c, str | int | float | bool | type(None)) or (
                isinstance(c, float) and not math.isfinite(c)
            ):
                raise LearningError(f"knob {self.name!r}: choice {c!r} is not a finite JSON scalar")
        if len({json.dumps(c) for c in self.choices}) != len(self.choices):
            raise LearningError(f"knob {self.name!r} lists a choice twice: {list(self.choices)}")
        if self.index(self.default) is None:
            raise LearningError(f"knob {self.name!r}: default {self.default!r} is not one of {list(self.choices)}")

    def index(self, value: Any) -> int | None:
        key = json.dumps(value)
        for i, c in enumerate(self.choices):
            if json.dumps(c) == key:
                return i
        return None


class SearchSpace:
    def __init__(self, knobs: Iterable[Knob]) -> None:
        self.knobs = tuple(knobs)
        if not self.knobs:
            raise LearningError("the search space is empty: there is nothing to tune")
        names = [k.name for k in self.knobs]
        if len(set(names)) != len(names):
            raise LearningError(f"knob names repeat: {names}")
        self._by_name = {k.name: k for k in self.knobs}
        self.width = sum(len(k.choices) for k in self.knobs)
        text = json.dumps([[k.name, list(k.choices)] for k in self.knobs])
        self.id = hashlib.sha256(text.encode()).hexdigest()[:12]

    @classmethod
    def from_choices(cls, choices: Mapping[str, Sequence[Scalar]], defaults: Mapping[str, Scalar] | None = None) -> SearchSpace:
        """From {knob: [choices]}; the default is `defaults[knob]` or the first choice."""
        defaults = defaults or {}
        return cls(Knob(n, tuple(c), defaults.get(n, next(iter(c), None))) for n, c in choices.items())

    # ---- configurations -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Knob]:
        return iter(self.knobs)

    def __getitem__(self, name: str) -> Knob:
        return self._by_name[name]

    @property
    def size(self) -> int:
        return math.prod(len(k.choices) for k in self.knobs)

    def default(self) -> dict[str, Scalar]:
        return {k.name: k.default for k in self.knobs}

    def complete(self, config: Mapping[str, Any]) -> dict[str, Scalar]:
        """Check a (partial) configuration and fill in defaults; unknown knobs or values are errors."""
        unknown = sorted(set(config) - set(self._by_name))
        if unknown:
            raise LearningError(f"unknown knobs {unknown}; this search space has {sorted(self._by_name)}")
        out = self.default()
        for name, value in config.items():
            k = self._by_name[name]
            i = k.index(value)
            if i is None:
                raise LearningError(f"knob {name!r} has no choice {value!r}; choices: {list(k.choices)}")
            out[name] = k.choices[i]
        return out

    def key(self, config: Mapping[str, Any]) -> str:
        return json.dumps(self.complete(config), sort_keys=True, separators=(",", ":"))

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """One-hot per knob, concatenated (float32[width])."""
        cfg = self.complete(config)
        v = np.zeros(self.width, dtype=np.float32)
        off = 0
        for k in self.knobs:
            v[off + (k.index(cfg[k.name]) or 0)] = 1.0
            off += len(k.choices)
        return v

    def sample(self, rng: np.random.Generator) -> dict[str, Scalar]:
        return {k.name: k.choices[int(rng.integers(len(k.choices)))] for k in self.knobs}

    def all(self, limit: int = 100_000) -> list[dict[str, Scalar]]:
        if self.size > limit:
            raise LearningError(f"the space has {self.size} configurations, over the {limit} listing limit")
        out: list[dict[str, Scalar]] = [{}]
        for k in self.knobs:
            out = [{**c, k.name: v} for c in out for v in k.choices]
        return out

    def moves(self, config: Mapping[str, Any]) -> list[tuple[str, Scalar]]:
        """Every single-knob change from `config`: (knob, new value)."""
        cfg = self.complete(config)
        return [(k.name, c) for k in self.knobs for c in k.choices if json.dumps(c) != json.dumps(cfg[k.name])]

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "knobs": {k.name: list(k.choices) for k in self.knobs}, "size": self.size}


def _jsonable(v: Any) -> Scalar:
    if isinstance(v, str | int | float | bool | type(None)):
        return v
    if hasattr(v, "value") and isinstance(v.value, str | int | float | bool):  # enums
        return v.value
    if isinstance(v, tuple | list):
        return json.dumps(list(v))  # a sequence-valued knob (e.g. a pass list) as one text choice
    raise LearningError(f"cannot use {v!r} ({type(v).__name__}) as a search-space choice")
