"""MicroLoRA cost model: predicts log-latency of a configuration for a pattern, adapted online, with
EWC so adapting to a new model family does not erase what was learned about earlier ones.

    x = [pattern vector (64), one-hot configuration (space.width)]
    h = tanh(W x + b + Σ_g s_g · B_g A_g x)        s = FLOP share per op group (Pattern.gates)
    ŷ = w·h + c                                       predicted log(latency / the default's latency)

The base (W, b, w, c) is fitted in consolidation (`fit`, full-batch Adam on the trajectory
buffer). Each op group g has a rank-2 adapter B_g A_g (A_g: 2 × in, B_g: hidden × 2), gated by how
much of the model's work that group is; `adapt` takes one SGD step on the adapters only, from
one new measurement. Unlike RuVector's MicroLoRA, both A and B learn (B starts at zero, A at small
random values, as in LoRA), so the adapters are really rank 2.

EWC (Kirkpatrick et al. 2017): `consolidate(data)` adds the diagonal Fisher information of the
adapters on that data, F = mean((∂ŷ/∂θ)²) (Gaussian likelihood, unit variance), to the running
Fisher and anchors θ* at the current adapters. Later steps minimise
    ½(ŷ − y)² + (λ/2) Σ F_i (θ_i − θ*_i)²          λ = 5000
The quadratic term is applied as an exact proximal step, θ ← (θ − η·g + η·λF·θ*) / (1 + η·λF),
which is stable for any η·λF (a plain gradient step diverges once η·λ·F > 2).

Parameters persist as npz (allow_pickle=False), one file per search space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LearningError
from .features import DIM, GROUPS
from .storage import atomic_write_npz, read_npz

EWC_LAMBDA = 5000.0
RANK = 2
BASE = ("W", "b", "w", "c")
ADAPTERS = ("A", "B")


@dataclass
class Batch:
    """Training rows: x (n, in), gates (n, groups), y (n,) log-latency."""

    x: np.ndarray
    gates: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


class MicroLoRACostModel:
    def __init__(
        self,
        config_width: int,
        hidden: int = 32,
        rank: int = RANK,
        lr: float = 0.05,
        ewc_lambda: float = EWC_LAMBDA,
        seed: int = 0,
    ) -> None:
        if config_width < 1 or hidden < 1 or rank < 1:
            raise LearningError("config_width, hidden and rank must be >= 1")
        rng = np.random.default_rng(seed)
        self.n_in = DIM + config_width
        self.hidden, self.rank, self.groups = hidden, rank, len(GROUPS)
        self.lr, self.ewc_lambda = lr, ewc_lambda
        gr = self.groups * rank
        self.p: dict[str, np.ndarray] = {
            "W": (rng.standard_normal((hidden, self.n_in)) / np.sqrt(self.n_in)),
            "b": np.zeros(hidden),
            "w": rng.standard_normal(hidden) / np.sqrt(hidden),
            "c": np.zeros(1),
            "A": rng.standard_normal((gr, self.n_in)) * 0.1,  # stacked A_g, rows g*rank .. g*rank+rank
            "B": np.zeros((hidden, gr)),  # stacked B_g, columns likewise
        }
        self.fisher = {k: np.zeros_like(self.p[k]) for k in ADAPTERS}
        self.anchor = {k: self.p[k].copy() for k in ADAPTERS}
        self.steps = 0
        self.consolidations = 0

    # ---- forward / backward ---------------------------------------------------------------------
    def _forward(self, x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
        """Batched: x (n, in), s (n, groups) -> (ŷ (n,), h, z·s)."""
        p = self.p
        zs = (x @ p["A"].T) * np.repeat(s, self.rank, axis=1)
        h = np.tanh(x @ p["W"].T + p["b"] + zs @ p["B"].T)
        return h @ p["w"] + p["c"][0], h, zs

    def predict(self, x: np.ndarray, gates: np.ndarray) -> np.ndarray:
        x, s = np.atleast_2d(x).astype(np.float64), np.atleast_2d(gates).astype(np.float64)
        if x.shape[1] != self.n_in or s.shape[1] != self.groups or len(x) != len(s):
            raise LearningError(
                f"cost model inputs: x must be (n, {self.n_in}) and gates (n, {self.groups}), "
                f"got {list(x.shape)} and {list(s.shape)}"
            )
        return self._forward(x, s)[0]

    def _grads(self, x: np.ndarray, s: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> tuple[float, dict]:
        p = self.p
        yhat, h, zs = self._forward(x, s)
        err = (yhat - y) / len(y)  # d(½·mean err²)/dŷ
        g: dict[str, np.ndarray] = {}
        dpre = np.outer(err, p["w"]) * (1.0 - h * h)
        if "w" in names:
            g["w"] = h.T @ err
        if "c" in names:
            g["c"] = np.array([err.sum()])
        if "W" in names:
            g["W"] = dpre.T @ x
        if "b" in names:
            g["b"] = dpre.sum(axis=0)
        if "B" in names:
            g["B"] = dpre.T @ zs
        if "A" in names:
            g["A"] = ((dpre @ p["B"]) * np.repeat(s, self.rank, axis=1)).T @ x
        return float(0.5 * np.mean((yhat - y) ** 2)), g

    # ---- online adaptation ----------------------------------------------------------------------
    def adapt(self, x: np.ndarray, gates: np.ndarray, y: float, lr: float | None = None) -> float:
        """One SGD step on the adapters from one measurement (x: (in,), gates: (groups,)); returns
        the squared error before the step. Kept to a handful of small numpy operations (< 100 µs)."""
        p, lr = self.p, self.lr if lr is None else lr
        s = np.repeat(gates, self.rank)
        z = p["A"] @ x
        zs = z * s
        h = np.tanh(p["W"] @ x + p["b"] + p["B"] @ zs)
        err = float(p["w"] @ h + p["c"][0] - y)
        dpre = (err * p["w"]) * (1.0 - h * h)
        gA = np.outer((p["B"].T @ dpre) * s, x)
        gB = np.outer(dpre, zs)
        self._step("A", gA, lr)
        self._step("B", gB, lr)
        self.steps += 1
        return err * err

    def _step(self, name: str, grad: np.ndarray, lr: float) -> None:
        if self.consolidations == 0:
            self.p[name] -= lr * grad
            return
        k = lr * self.ewc_lambda * self.fisher[name]  # proximal step for (λ/2)·F·(θ − θ*)²
        self.p[name] = (self.p[name] - lr * grad + k * self.anchor[name]) / (1.0 + k)

    def adapt_batch(self, batch: Batch, epochs: int = 1, lr: float | None = None, seed: int = 0) -> float:
        """`adapt` over every row, in a shuffled order per epoch; returns the mean squared error
        seen during the last epoch."""
        rng = np.random.default_rng(seed)
        x, s, y = batch.x.astype(np.float64), batch.gates.astype(np.float64), batch.y.astype(np.float64)
        last = 0.0
        for _ in range(epochs):
            errs = [self.adapt(x[i], s[i], float(y[i]), lr) for i in rng.permutation(len(y))]
            last = float(np.mean(errs)) if errs else 0.0
        return last

    # ---- consolidation ----------------------------------------------------------------------------
    def fit(self, batch: Batch, epochs: int = 300, lr: float = 0.01, seed: int = 0) -> float:
        """Fit the base (adapters frozen) by full-batch Adam; returns the final ½·MSE."""
        if len(batch) == 0:
            raise LearningError("nothing to fit: the batch is empty")
        from threadpoolctl import threadpool_limits

        # these matrices are tiny: BLAS threads only add synchronisation (10x slower on 2 busy cores)
        with threadpool_limits(1, user_api="blas"):
            return self._fit(batch, epochs, lr)

    def _fit(self, batch: Batch, epochs: int, lr: float) -> float:
        x, s, y = batch.x.astype(np.float64), batch.gates.astype(np.float64), batch.y.astype(np.float64)
        m = {k: np.zeros_like(self.p[k]) for k in BASE}
        v = {k: np.zeros_like(self.p[k]) for k in BASE}
        if self.steps == 0 and self.consolidations == 0:
            self.p["c"][0] = float(np.mean(y))  # start at the mean log-latency
        loss = 0.0
        for t in range(1, epochs + 1):
            loss, g = self._grads(x, s, y, BASE)
            for k in BASE:
                m[k] = 0.9 * m[k] + 0.1 * g[k]
                v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
                self.p[k] -= lr * (m[k] / (1 - 0.9**t)) / (np.sqrt(v[k] / (1 - 0.999**t)) + 1e-8)
        return loss

    def consolidate(self, batch: Batch) -> None:
        """EWC: add the adapters' Fisher information on `batch` and anchor them where they are."""
        if len(batch) == 0:
            return
        x, s = batch.x.astype(np.float64), batch.gates.astype(np.float64)
        p = self.p
        _, h, zs = self._forward(x, s)
        dpre = p["w"] * (1.0 - h * h)  # ∂ŷ/∂pre, per row (n, hidden)
        srep = np.repeat(s, self.rank, axis=1)
        # per-row gradients squared, averaged: F_B[j, r] = mean(dpre[:, j]² · zs[:, r]²), likewise A
        self.fisher["B"] += (dpre**2).T @ (zs**2) / len(x)
        self.fisher["A"] += (((dpre @ p["B"]) * srep) ** 2).T @ (x**2) / len(x)
        self.anchor = {k: p[k].copy() for k in ADAPTERS}
        self.consolidations += 1

    def ewc_penalty(self) -> float:
        return float(
            0.5
            * self.ewc_lambda
            * sum(np.sum(self.fisher[k] * (self.p[k] - self.anchor[k]) ** 2) for k in ADAPTERS)
        )

    # ---- persistence ------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        arrays = {k: v for k, v in self.p.items()}
        arrays.update({f"fisher_{k}": self.fisher[k] for k in ADAPTERS})
        arrays.update({f"anchor_{k}": self.anchor[k] for k in ADAPTERS})
        arrays["meta"] = np.array(
            [self.n_in, self.hidden, self.rank, self.groups, self.steps, self.consolidations], dtype=np.int64
        )
        arrays["hyper"] = np.array([self.lr, self.ewc_lambda], dtype=np.float64)
        atomic_write_npz(path, arrays)

    @classmethod
    def load(cls, path: Path, config_width: int) -> MicroLoRACostModel:
        spec = {"W": ("f", 2), "b": ("f", 1), "w": ("f", 1), "c": ("f", 1), "A": ("f", 2), "B": ("f", 2),
                "fisher_A": ("f", 2), "fisher_B": ("f", 2), "anchor_A": ("f", 2), "anchor_B": ("f", 2),
                "meta": ("i", 1), "hyper": ("f", 1)}
        a = read_npz(path, spec)
        if len(a["meta"]) != 6 or len(a["hyper"]) != 2:
            raise LearningError(f"{path}: malformed cost-model header; move it aside to start afresh")
        n_in, hidden, rank, groups, steps, cons = (int(v) for v in a["meta"])
        if n_in != DIM + config_width or groups != len(GROUPS) or not (1 <= rank <= 16 and 1 <= hidden <= 4096):
            raise LearningError(
                f"{path} was made for {n_in} inputs and {groups} op groups; this search space needs "
                f"{DIM + config_width} and {len(GROUPS)}; move it aside to start afresh."
            )
        m = cls(config_width, hidden, rank, float(a["hyper"][0]), float(a["hyper"][1]))
        for k in m.p:
            if a[k].shape != m.p[k].shape:
                raise LearningError(f"{path}: array {k!r} is {list(a[k].shape)}, expected {list(m.p[k].shape)}")
            m.p[k] = a[k].astype(np.float64)
        for k in ADAPTERS:
            for store, prefix in ((m.fisher, "fisher_"), (m.anchor, "anchor_")):
                if a[prefix + k].shape != m.p[k].shape:
                    raise LearningError(f"{path}: array {prefix + k!r} has the wrong shape")
                store[k] = a[prefix + k].astype(np.float64)
        if np.any(m.fisher["A"] < 0) or np.any(m.fisher["B"] < 0):
            raise LearningError(f"{path}: negative Fisher information; move it aside to start afresh")
        m.steps, m.consolidations = steps, cons
        return m
