"""Hierarchical depth embedding of a model graph in the Lorentz (hyperboloid) model of H².

Each node becomes a point x = (cosh r, sinh r·cos θ, sinh r·sin θ) on the hyperboloid
−x0² + x1² + x2² = −1:
- r = scale · (topological depth + 1): deeper nodes lie further from the origin;
- θ comes from a spanning tree of the DAG: each node's parent is its deepest predecessor (the
  lowest-numbered one on ties); every node owns an angular interval, split equally among its
  children in graph order (the graph's entry nodes split [0, 2π)), and θ is the middle of it.
Hyperbolic space has room for trees: siblings stay apart however deep the hierarchy goes. An only
child keeps its parent's angle, so along a chain the Lorentz distance arcosh(−⟨x, y⟩) between
neighbours is exactly `scale`.

`pattern_features` condenses the embedding into a fixed-size vector (Lorentzian centroid, spread,
depth and branching), a feature the pattern memory (wasm_torch/learn) can add to its graph embedding;
draw.py shows the embedding in the Poincaré disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .analyses import topological_depth
from .dag import Dag


@dataclass(frozen=True)
class DepthEmbedding:
    keys: tuple[str, ...]
    points: np.ndarray  # (n, 3) Lorentz coordinates
    parent: tuple[int, ...]  # tree parent of each node (-1 for entry nodes)
    scale: float

    def distance(self, a: str, b: str) -> float:
        i, j = self.keys.index(a), self.keys.index(b)
        return lorentz_distance(self.points[i], self.points[j])

    def poincare(self) -> np.ndarray:
        """(n, 2) points in the Poincaré disk: x[1:] / (1 + x[0])."""
        return self.points[:, 1:] / (1.0 + self.points[:, :1])


def lorentz_inner(x: np.ndarray, y: np.ndarray) -> float:
    return float(-x[0] * y[0] + x[1:] @ y[1:])


def lorentz_distance(x: np.ndarray, y: np.ndarray) -> float:
    return math.acosh(max(1.0, -lorentz_inner(x, y)))


def depth_embedding(dag: Dag, scale: float = 0.5) -> DepthEmbedding:
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    depth = topological_depth(dag)
    d = [depth[k] for k in dag.keys]
    parent = []
    for i in range(dag.n):
        ps = sorted(dag.preds[i])
        parent.append(max(ps, key=lambda p: (d[p], -p)) if ps else -1)
    children: dict[int, list[int]] = {}
    for i, p in enumerate(parent):
        children.setdefault(p, []).append(i)
    interval: dict[int, tuple[float, float]] = {-1: (0.0, 2 * math.pi)}
    theta = [0.0] * dag.n
    for p in [-1, *range(dag.n)]:  # parents come before children in graph order
        kids = children.get(p, [])
        a, b = interval[p]
        w = (b - a) / max(1, len(kids))
        for j, c in enumerate(kids):
            interval[c] = (a + j * w, a + (j + 1) * w)
            theta[c] = a + (j + 0.5) * w
    pts = np.zeros((dag.n, 3))
    for i in range(dag.n):
        r = scale * (d[i] + 1)
        pts[i] = (math.cosh(r), math.sinh(r) * math.cos(theta[i]), math.sinh(r) * math.sin(theta[i]))
    return DepthEmbedding(dag.keys, pts, tuple(parent), scale)


def lorentz_centroid(points: np.ndarray) -> np.ndarray:
    """The Lorentzian centroid: the mean of the points scaled back onto the hyperboloid."""
    s = points.sum(axis=0)
    norm = math.sqrt(max(1e-300, -lorentz_inner(s, s)))
    return s / norm


PATTERN_DIMS = 8


def pattern_features(emb: DepthEmbedding) -> np.ndarray:
    """[centroid x0, x1, x2, mean distance to the centroid, max radius, mean radius,
    share of tree nodes with > 1 child, mean children per parent] as float32."""
    if not len(emb.keys):
        return np.zeros(PATTERN_DIMS, np.float32)
    c = lorentz_centroid(emb.points)
    dist = [lorentz_distance(c, p) for p in emb.points]
    radius = np.arccosh(np.maximum(1.0, emb.points[:, 0]))
    kids: dict[int, int] = {}
    for p in emb.parent:
        if p >= 0:
            kids[p] = kids.get(p, 0) + 1
    branching = sum(1 for v in kids.values() if v > 1) / len(emb.keys)
    per_parent = float(np.mean(list(kids.values()))) if kids else 0.0
    return np.array([*c, np.mean(dist), radius.max(), radius.mean(), branching, per_parent], np.float32)
