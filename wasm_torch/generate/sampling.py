"""Choosing the next token from the logits, on the host: greedy, or seeded sampling with temperature,
top-k, top-p and a repetition penalty — with Hugging Face `generate`'s semantics and order.

    s = Sampling()                                          # greedy (argmax), HF's do_sample=False
    s = Sampling(do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1, seed=0)
    chooser = s.chooser()                                   # holds the seeded random stream
    token = chooser(logits, context_ids)                    # one int

Order (transformers' logits processors): repetition penalty (a logit of a token already in the
context is divided by the penalty when positive, multiplied when negative), then for sampling
temperature (logits / t), top-k (keep logits >= the k-th largest; ties kept), top-p (sorted
ascending, drop the tokens whose cumulative probability is <= 1 - top_p; the most likely token
always stays), softmax, one draw. Greedy takes the first index of the largest penalised logit.
Everything runs in float64 on NumPy; the draw uses numpy's PCG64 stream of `seed`, so a seed gives
the same tokens every run on every host (the logits are bit-identical: wasm's math is our own).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

Chooser = Callable[[np.ndarray, Sequence[int]], int]


@dataclass(frozen=True)
class Sampling:
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    repetition_penalty: float = 1.0  # 1.0: off
    seed: int | None = None  # None: a fresh random stream per generation

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> InputError:
            return InputError(f"sampling {field}={getattr(self, field)!r}: {why}")

        if not isinstance(self.do_sample, bool):
            raise bad("do_sample", "expected True or False")
        for f, lo in (("temperature", 0.0), ("repetition_penalty", 0.0)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not v > lo:
                raise bad(f, "expected a finite number > 0")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise bad("top_k", "expected an integer >= 0 (0 turns it off)")
        tp = self.top_p
        if isinstance(tp, bool) or not isinstance(tp, (int, float)) or not 0.0 < tp <= 1.0:
            raise bad("top_p", "expected a number in (0, 1] (1 turns it off)")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed < 2**63):  # fmt: skip
            raise bad("seed", "expected an integer in [0, 2**63) or None")

    @staticmethod
    def from_json(d: dict) -> Sampling:
        """From request parameters (server, CLI): unknown keys are refused by name."""
        if not isinstance(d, dict):
            raise InputError(f"sampling parameters must be an object, not {type(d).__name__}")
        known = {f for f in Sampling.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown sampling parameters {unknown[:8]}; known: {sorted(known)}")
        return Sampling(**d)

    def chooser(self) -> Chooser:
        rng = np.random.default_rng(self.seed) if self.do_sample else None

        def choose(logits: np.ndarray, context: Sequence[int]) -> int:
            x = process(np.asarray(logits, dtype=np.float64).reshape(-1), context, self)
            if rng is None:
                return int(np.argmax(x))
            return draw(x, float(rng.random()))

        return choose


def process(logits: np.ndarray, context: Sequence[int], s: Sampling) -> np.ndarray:
    """The logits after the repetition penalty and (when sampling) temperature, top-k and top-p;
    removed tokens are -inf. float64 in, float64 out."""
    x = logits.astype(np.float64, copy=True)
    if s.repetition_penalty != 1.0 and len(context):
        ids = np.unique(np.asarray(context, dtype=np.int64))
        seen = x[ids]
        x[ids] = np.where(seen < 0, seen * s.repetition_penalty, seen / s.repetition_penalty)
    if not s.do_sample:
        return x
    if s.temperature != 1.0:
        x = x / s.temperature
    if 0 < s.top_k < x.size:
        kth = np.partition(x, x.size - s.top_k)[x.size - s.top_k]
        x = np.where(x < kth, -np.inf, x)
    if s.top_p < 1.0:
        order = np.argsort(x, kind="stable")  # ascending, as transformers sorts
        cum = np.cumsum(softmax(x[order]))
        drop = cum <= 1.0 - s.top_p
        drop[-1] = False  # the most likely token always stays
        x[order[drop]] = -np.inf
    return x


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()


def draw(x: np.ndarray, u: float) -> int:
    """The token whose cumulative probability first exceeds u (inverse CDF over token order)."""
    p = softmax(x)
    i = int(np.searchsorted(np.cumsum(p), u * p.sum(), side="right"))
    i = min(i, p.size - 1)
    while p[i] == 0.0 and i > 0:  # u at the very top: step back to a token that can be drawn
        i -= 1
    return i
