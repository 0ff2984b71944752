"""Small fakes honouring the runtime contract (wasm_torch.load's returned object)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from wasm_torch.errors import InputError


@dataclass(frozen=True)
class Spec:
    name: str
    dtype: str
    shape: tuple[int | str, ...]


class FakeModel:
    """y = x @ W + 1 for x of shape (batch, 4) float32 -> y (batch, 3)."""

    W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10

    def __init__(self, inputs: list[Spec] | None = None, outputs: list[Spec] | None = None) -> None:
        self.inputs = inputs or [Spec("x", "float32", ("batch", 4))]
        self.outputs = outputs or [Spec("y", "float32", ("batch", 3))]
        self.batches: list[int] = []
        self.calls = 0
        self._lock = threading.Lock()

    def _check(self, inputs: dict[str, np.ndarray]) -> None:
        if set(inputs) != {s.name for s in self.inputs}:
            raise InputError(f"expected inputs {[s.name for s in self.inputs]}")
        for s in self.inputs:
            a = inputs[s.name]
            if a.dtype != np.dtype(s.dtype) or a.ndim != len(s.shape):
                raise InputError(f"{s.name}: bad dtype/rank")
            for got, want in zip(a.shape, s.shape, strict=True):
                if isinstance(want, int) and got != want:
                    raise InputError(f"{s.name}: bad shape {a.shape}")

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check(inputs)
        with self._lock:
            self.calls += 1
            self.batches.append(int(next(iter(inputs.values())).shape[0]) if inputs else 0)
        x = inputs[self.inputs[0].name].astype(np.float32).reshape(-1, 4)
        return {self.outputs[0].name: (x @ self.W + 1).astype(np.float32)}

    def __call__(self, *arrays: np.ndarray) -> Any:
        return self.run(dict(zip([s.name for s in self.inputs], arrays, strict=True)))[self.outputs[0].name]

    def stats(self) -> dict[str, Any]:
        return {"calls": self.calls, "total_ms": 0.0, "last_ms": 0.0, "memory_bytes": 65536}


def fixed_model() -> FakeModel:
    """No symbolic dim: never batched."""
    return FakeModel([Spec("x", "float32", (2, 4))], [Spec("y", "float32", (2, 3))])


class TokenModel(FakeModel):
    """Two int64 inputs (batch, seq) -> (batch, 3): like a text encoder's ids + mask."""

    def __init__(self) -> None:
        super().__init__(
            [Spec("input_ids", "int64", ("batch", "seq")), Spec("attention_mask", "int64", ("batch", "seq"))],
            [Spec("emb", "float32", ("batch", 3))],
        )

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check(inputs)
        with self._lock:
            self.calls += 1
            self.batches.append(int(inputs["input_ids"].shape[0]))
        ids = (inputs["input_ids"] * inputs["attention_mask"]).astype(np.float32)
        s = ids.sum(axis=1, keepdims=True)
        return {"emb": np.concatenate([s, s * 2, s * 3], axis=1).astype(np.float32)}


def expected(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) @ FakeModel.W + 1).astype(np.float32)
