"""A measurer with a planted answer: each knob choice multiplies the latency by a known factor, and
every round adds multiplicative noise. The best configuration is known, so tests can check that
the tuner finds it — without compiling anything."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from wasm_torch.errors import CompileError
from wasm_torch.learn.measure import Measurement, Report
from wasm_torch.learn.space import SearchSpace


class PlantedMeasurer:
    def __init__(
        self,
        space: SearchSpace,
        factors: dict[str, dict[Any, float]],
        noise: float = 0.02,
        rounds: int = 41,
        seed: int = 0,
        broken: set[str] | None = None,
    ) -> None:
        self.space, self.factors, self.noise, self.rounds = space, factors, noise, rounds
        self.rng = np.random.default_rng(seed)
        self.broken = broken or set()  # configuration keys that "fail to build"
        self.calls: list[dict[str, Any]] = []

    def true_ratio(self, config: Mapping[str, Any]) -> float:
        cfg = self.space.complete(config)
        default = self.space.default()
        r = 1.0
        for knob, table in self.factors.items():
            r *= table.get(cfg[knob], 1.0) / table.get(default[knob], 1.0)
        return r

    def best(self) -> dict[str, Any]:
        return min(self.space.all(), key=self.true_ratio)

    def measure(self, config: Mapping[str, Any], report: Report | None = None) -> Measurement:
        self.calls.append(dict(config))
        if self.space.key(config) in self.broken:
            raise CompileError("planted build failure")
        truth = self.true_ratio(config)
        cand: list[float] = []
        base: list[float] = []
        stopped = False
        for r in range(self.rounds):  # noise only ever adds time, as other processes do
            base.append(1e-3 * float(np.exp(abs(self.noise * self.rng.standard_normal()))))
            cand.append(1e-3 * truth * float(np.exp(abs(self.noise * self.rng.standard_normal()))))
            m = Measurement(tuple(cand), tuple(base))
            if report is not None and r < self.rounds - 1 and report(r, m.ratio):
                stopped = True
                break
        return Measurement(tuple(cand), tuple(base), stopped)


def planted(space: SearchSpace, best: dict[str, Any], step: float = 0.8) -> dict[str, dict[Any, float]]:
    """Factors making `best` the unique optimum: its choice of each knob is `step`x, others 1.0-1.4x."""
    out: dict[str, dict[Any, float]] = {}
    for i, k in enumerate(space):
        out[k.name] = {c: (step if json.dumps(c) == json.dumps(best[k.name]) else 1.0 + 0.1 * ((i + j) % 5))
                       for j, c in enumerate(k.choices)}
    return out
