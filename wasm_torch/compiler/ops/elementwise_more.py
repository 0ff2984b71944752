"""Elementwise ops added for model-zoo coverage: fmod, round, trunc, sign, expm1, log2.

Same shape rule, registry record and loop emitter as ops/elementwise.py (they fuse like any other
elementwise op); the scalar C of fmod is `wt_fmodf` in kernels/wt_extra_math.h.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Node
from ..ir.op import register
from .elementwise import _by_kind, _ew, _f, _fixed_vector


def _fmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.fmod(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)
    return np.fmod(a, b)


def _round(x: np.ndarray, n: Node) -> np.ndarray:  # half to even, like torch.round
    return np.round(x) if x.dtype.kind == "f" else x


def _sign(x: np.ndarray, n: Node) -> np.ndarray:
    return np.sign(x).astype(x.dtype)


register(
    _ew("fmod", lambda n, a: _fmod(a[0], a[1]), _by_kind("fmod", "wt_fmodf({0}, {1})", "({0} % {1})"), None),
    _ew("round", lambda n, a: _round(a[0], n), _by_kind("round", "__builtin_rintf({0})", "{0}"), _fixed_vector("wasm_f32x4_nearest({0})")),
    _ew(
        "trunc",
        lambda n, a: np.trunc(a[0]) if a[0].dtype.kind == "f" else a[0],
        _by_kind("trunc", "__builtin_truncf({0})", "{0}"),
        _fixed_vector("wasm_f32x4_trunc({0})"),
    ),
    _ew(
        "sign",
        lambda n, a: _sign(a[0], n),
        _by_kind("sign", "({0} != {0} ? {0} : (float)(({0} > 0) - ({0} < 0)))", "(({0} > 0) - ({0} < 0))"),
        None,
    ),
    _ew("expm1", lambda n, a: _f(a[0], np.expm1), _by_kind("expm1", "wt_expm1f({0})", None), None),
    _ew("log2", lambda n, a: _f(a[0], np.log2), _by_kind("log2", "(wt_logf({0}) * 1.44269504088896341f)", None), None),
)
