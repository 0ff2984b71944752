"""Pure helpers for dynamic batching: which models batch, which requests fit together, and
how a batch is assembled and split again."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wasm_torch.serve.protocol import TensorSpecLike

Signature = tuple[tuple[str, str, tuple[int, ...]], ...]


def batch_symbol(inputs: Sequence[TensorSpecLike], outputs: Sequence[TensorSpecLike]) -> str | None:
    """The symbolic dim shared at position 0 by every input and output, if there is one.

    Only then can requests be concatenated along dim 0 and the outputs split back per request.
    """
    firsts = {s.shape[0] if s.shape else None for s in (*inputs, *outputs)}
    if len(firsts) == 1:
        (first,) = firsts
        if isinstance(first, str):
            return first
    return None


def signature(inputs: Mapping[str, np.ndarray]) -> Signature:
    """Requests batch together only when everything but dim 0 agrees (e.g. same seq length)."""
    return tuple(sorted((n, a.dtype.str, tuple(a.shape[1:])) for n, a in inputs.items()))


def concat(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}


def split(outputs: Mapping[str, np.ndarray], rows: Sequence[int]) -> list[dict[str, np.ndarray]]:
    bounds = np.cumsum(rows)[:-1]
    pieces = {name: np.split(np.asarray(arr), bounds, axis=0) for name, arr in outputs.items()}
    return [{name: pieces[name][i] for name in outputs} for i in range(len(rows))]


@dataclass(eq=False)
class Job:
    """One request travelling through the pool. Exactly one answer is ever delivered."""

    inputs: dict[str, np.ndarray]
    rows: int
    sig: Signature | None
    enqueued: float
    future: Future[dict[str, np.ndarray]] = field(default_factory=Future)
    attempts: int = 0
    tried: set[int] = field(default_factory=set)
    started: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def done(self) -> bool:
        return self.future.done()

    def resolve(self, value: dict[str, np.ndarray]) -> bool:
        with self._lock:
            if self.future.done():
                return False
            try:
                self.future.set_result(value)
            except InvalidStateError:  # cancelled by a waiter that gave up
                return False
            return True

    def fail(self, exc: BaseException) -> bool:
        with self._lock:
            if self.future.done():
                return False
            try:
                self.future.set_exception(exc)
            except InvalidStateError:
                return False
            return True
