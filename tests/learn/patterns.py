"""Synthetic patterns for the learning tests (no torch, no compile)."""

from __future__ import annotations

import numpy as np

from wasm_torch.learn.features import DIM, GROUPS, Pattern


def synthetic_pattern(key: str, rng: np.random.Generator, centre: np.ndarray | None = None) -> Pattern:
    v = (rng.random(DIM) if centre is None else centre + 0.01 * rng.standard_normal(DIM)).astype(np.float32)
    g = rng.dirichlet(np.ones(len(GROUPS))).astype(np.float32)
    return Pattern(v, g, key, {"gflops": 0.01, "machine": "test"})
