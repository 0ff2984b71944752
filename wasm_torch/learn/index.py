"""The k-means++ pattern index: coarse clusters over stored pattern vectors for fast neighbour search.

scikit-learn does the clustering (KMeans, init="k-means++") and the centroid search (a KDTree
over the centroids: one C call per query; NearestNeighbors.kneighbors adds ~0.5 ms of input
checking, and its brute-force path starts OpenMP threads, which on a busy 2-core machine costs
milliseconds); a query looks at the `n_probe` clusters whose centroids are nearest and ranks
their members by exact distance (an inverted-file index, as FAISS's IVF does). With k ~ sqrt(n)
clusters a query touches ~n_probe·sqrt(n) vectors instead of n.

Persisted as npz (centroids, labels, keys); the scikit-learn objects are rebuilt from those on
load (never pickled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LearningError
from .storage import atomic_write_npz, read_npz

MAX_CLUSTERS = 100  # RuVector's pattern_clusters


@dataclass
class Neighbour:
    row: int  # row in the index's vectors
    key: str
    distance: float


class PatternIndex:
    def __init__(self, keys: list[str], vectors: np.ndarray, centroids: np.ndarray, labels: np.ndarray):
        from sklearn.neighbors import KDTree

        if len(keys) != len(vectors) or len(labels) != len(vectors):
            raise LearningError(
                f"pattern index arrays disagree: {len(keys)} keys, {len(vectors)} vectors, {len(labels)} labels"
            )
        if len(centroids) and (labels.min(initial=0) < 0 or labels.max(initial=0) >= len(centroids)):
            raise LearningError("pattern index labels point outside its centroids")
        self.keys = list(keys)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.labels = labels.astype(np.int64)
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(len(self.centroids) + 1))
        self._members = [order[bounds[c] : bounds[c + 1]] for c in range(len(self.centroids))]
        self._tree = KDTree(self.centroids.astype(np.float64)) if len(self.centroids) else None

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, keys: list[str], vectors: np.ndarray, seed: int = 0) -> PatternIndex:
        from sklearn.cluster import KMeans

        n = len(keys)
        if n == 0:
            return cls([], np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), np.float32),
                       np.zeros((0, 0), np.float32), np.zeros(0, np.int64))
        uniq = len(np.unique(vectors, axis=0))
        k = max(1, min(MAX_CLUSTERS, uniq, round(math.sqrt(n))))
        km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=100, random_state=seed)
        labels = km.fit_predict(vectors.astype(np.float64))
        return cls(keys, vectors, km.cluster_centers_.astype(np.float32), labels)

    def query(self, vector: np.ndarray, n: int = 5, n_probe: int = 8) -> list[Neighbour]:
        if self._tree is None or n <= 0:
            return []
        v = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        probe = min(n_probe, len(self.centroids))
        _, near = self._tree.query(v.astype(np.float64), k=probe)
        rows = np.concatenate([self._members[c] for c in near[0]])
        if len(rows) == 0:
            return []
        d = np.linalg.norm(self.vectors[rows] - v, axis=1)
        top = np.argsort(d)[:n]
        return [Neighbour(int(rows[t]), self.keys[rows[t]], float(d[t])) for t in top]

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: Path, built_from: int) -> None:
        atomic_write_npz(
            path,
            {
                "keys": np.array(self.keys, dtype=str) if self.keys else np.zeros(0, dtype="<U1"),
                "vectors": self.vectors,
                "centroids": self.centroids,
                "labels": self.labels,
                "built_from": np.array([built_from], dtype=np.int64),
            },
        )

    @classmethod
    def load(cls, path: Path) -> tuple[PatternIndex, int]:
        a = read_npz(
            path,
            {"keys": ("U", 1), "vectors": ("f", 2), "centroids": ("f", 2), "labels": ("i", 1),
             "built_from": ("i", 1)},
        )
        try:
            index = cls([str(k) for k in a["keys"]], a["vectors"], a["centroids"], a["labels"])
        except LearningError as e:
            raise LearningError(f"{path}: {e}; move it aside, background_learn rebuilds it") from e
        return index, int(a["built_from"][0]) if len(a["built_from"]) else 0
