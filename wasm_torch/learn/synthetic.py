"""Synthetic model families with known answers, for the cost-model / EWC tests and benchmarks.

A family is a cloud of pattern vectors whose work is concentrated on a few op groups (say conv +
elementwise, or gemm + elementwise). The true log-latency of configuration c on pattern p is

    y(p, c) = u·p + Σ_g s_g(p) · E_g·onehot(c)

with fixed random u and per-group effects E_g: each op group responds to the knobs in its own way,
and a model's response is the FLOP-weighted mix. Families that share a group (elementwise) share
part of the answer, which is what makes forgetting possible — and measurable against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .costmodel import Batch
from .features import DIM, GROUPS
from .space import SearchSpace


def demo_space(knobs: int = 4, choices: int = 3) -> SearchSpace:
    return SearchSpace.from_choices({f"k{i}": list(range(choices)) for i in range(knobs)})


@dataclass
class World:
    space: SearchSpace
    u: np.ndarray  # (DIM,)
    effects: np.ndarray  # (groups, width)
    centres: dict[str, np.ndarray]
    mixes: dict[str, dict[str, float]]  # family -> {group: mean share}

    def patterns(self, family: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        vec = self.centres[family] + 0.05 * rng.standard_normal((n, DIM))
        mix = self.mixes[family]
        gates = np.zeros((n, len(GROUPS)))
        for g, share in mix.items():
            gates[:, GROUPS.index(g)] = np.clip(share + 0.15 * rng.standard_normal(n), 0.02, None)
        gates /= gates.sum(axis=1, keepdims=True)
        return vec.astype(np.float32), gates.astype(np.float32)

    def truth(self, vec: np.ndarray, gates: np.ndarray, enc: np.ndarray) -> np.ndarray:
        return vec @ self.u + np.einsum("ng,gw,nw->n", gates, self.effects, enc)

    def batch(
        self, family: str, n: int, rng: np.random.Generator, default_only: bool = False, noise: float = 0.0
    ) -> Batch:
        vec, gates = self.patterns(family, n, rng)
        cfgs = [self.space.default() if default_only else self.space.sample(rng) for _ in range(n)]
        enc = np.stack([self.space.encode(c) for c in cfgs])
        y = self.truth(vec, gates, enc) + noise * rng.standard_normal(n)
        return Batch(np.concatenate([vec, enc], axis=1), gates, y)


def make_world(seed: int = 0, space: SearchSpace | None = None) -> World:
    rng = np.random.default_rng(seed)
    space = space or demo_space()
    u = rng.standard_normal(DIM) * 0.1
    effects = rng.standard_normal((len(GROUPS), space.width)) * 0.4
    centres = {f: rng.random(DIM) for f in ("conv", "gemm")}
    mixes = {"conv": {"conv": 0.6, "elementwise": 0.4}, "gemm": {"gemm": 0.6, "elementwise": 0.4}}
    return World(space, u, effects, centres, mixes)
