"""Elementwise ops: one row each — NumPy meaning, scalar C template, f32x4 template.

Templates use {0}, {1}, {2} for operands. Scalar functions prefixed wt_ live in kernels/wt_base.h,
their f32x4 twins (wt_v_*) in kernels/wt_vmath.h; the two round identically, so a loop may mix
them (vector body, scalar tail). Loops over these ops, alone or fused into one program, are
emitted by `codegen/fused.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import UnsupportedOpError
from ..codegen.ctable import CTYPE, literal
from ..codegen.fused import emit_elementwise, program_of
from ..ir.graph import DTYPES, Node, TensorType, numel
from ..ir.op import OpDef, broadcast, program_types, register

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _f(x: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Evaluate in float64, round once to the input's dtype: the reference is exact-then-rounded."""
    return fn(x.astype(np.float64)).astype(x.dtype)


def _floordiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.floor_divide(a, b) if a.dtype.kind != "f" else np.floor(a / b).astype(a.dtype)


def _clamp(x: np.ndarray, n: Node) -> np.ndarray:
    lo, hi = n.attrs.get("min"), n.attrs.get("max")
    return np.clip(x, lo if lo is not None else -np.inf, hi if hi is not None else np.inf).astype(x.dtype)


_HARDSIG = "WT_MIN(WT_MAX({0} * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f)"
_V_HARDSIG = "wasm_f32x4_pmin(WT_F4(1.0f), wasm_f32x4_pmax(WT_F4(0.0f), WT_VADD(WT_VMUL({0}, WT_F4(1.0f / 6.0f)), WT_F4(0.5f))))"

# name: (NumPy meaning on (x, node), C for float, C for integers (None: float only), f32x4 or None)
# pmax(a, b) = a < b ? b : a: the same choices (and NaN handling) as the scalar WT_MAX / WT_MIN.
UNARY: dict[str, tuple[Callable[[np.ndarray, Node], np.ndarray], str, str | None, str | None]] = {
    "neg": (lambda x, n: -x, "(-{0})", "(-{0})", "wasm_f32x4_neg({0})"),
    "abs": (lambda x, n: np.abs(x), "__builtin_fabsf({0})", "({0} < 0 ? -{0} : {0})", "wasm_f32x4_abs({0})"),
    "relu": (
        lambda x, n: np.maximum(x, 0).astype(x.dtype),
        "({0} > 0 ? {0} : 0)",
        "({0} > 0 ? {0} : 0)",
        "wasm_f32x4_pmax(WT_F4(0.0f), {0})",
    ),
    "gelu": (
        lambda x, n: _f(x, lambda v: 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0)))),
        "wt_geluf({0})",
        None,
        "wt_v_geluf({0})",
    ),
    "gelu_tanh": (
        lambda x, n: _f(x, lambda v: 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))),
        "wt_gelu_tanhf({0})",
        None,
        "wt_v_gelu_tanhf({0})",
    ),
    "silu": (lambda x, n: _f(x, lambda v: v / (1 + np.exp(-v))), "({0} * wt_sigmoidf({0}))", None, "wt_v_siluf({0})"),
    "sigmoid": (lambda x, n: _f(x, lambda v: 1 / (1 + np.exp(-v))), "wt_sigmoidf({0})", None, "wt_v_sigmoidf({0})"),
    "tanh": (lambda x, n: _f(x, np.tanh), "wt_tanhf({0})", None, "wt_v_tanhf({0})"),
    "exp": (lambda x, n: _f(x, np.exp), "wt_expf({0})", None, "wt_v_expf({0})"),
    "log": (lambda x, n: _f(x, np.log), "wt_logf({0})", None, None),
    "log1p": (lambda x, n: _f(x, np.log1p), "wt_log1pf({0})", None, None),
    "sqrt": (lambda x, n: _f(x, np.sqrt), "__builtin_sqrtf({0})", None, "wasm_f32x4_sqrt({0})"),
    "rsqrt": (
        lambda x, n: _f(x, lambda v: 1 / np.sqrt(v)),
        "(1.0f / __builtin_sqrtf({0}))",
        None,
        "WT_VDIV(WT_F4(1.0f), wasm_f32x4_sqrt({0}))",
    ),
    "erf": (lambda x, n: _f(x, _erf), "wt_erff({0})", None, "wt_v_erff({0})"),
    "sin": (lambda x, n: _f(x, np.sin), "wt_sinf({0})", None, None),
    "cos": (lambda x, n: _f(x, np.cos), "wt_cosf({0})", None, None),
    "reciprocal": (lambda x, n: _f(x, lambda v: 1 / v), "(1.0f / {0})", None, "WT_VDIV(WT_F4(1.0f), {0})"),
    "floor": (
        lambda x, n: np.floor(x) if x.dtype.kind == "f" else x,
        "__builtin_floorf({0})",
        "{0}",
        "wasm_f32x4_floor({0})",
    ),
    "ceil": (
        lambda x, n: np.ceil(x) if x.dtype.kind == "f" else x,
        "__builtin_ceilf({0})",
        "{0}",
        "wasm_f32x4_ceil({0})",
    ),
    "logical_not": (lambda x, n: ~x.astype(bool), "(!{0})", "(!{0})", None),
    "copy": (lambda x, n: x.copy(), "{0}", "{0}", "{0}"),
    "hardsigmoid": (lambda x, n: (np.clip(x / 6 + 0.5, 0, 1)).astype(x.dtype), _HARDSIG, None, _V_HARDSIG),
    "hardswish": (
        lambda x, n: (x * np.clip(x / 6 + 0.5, 0, 1)).astype(x.dtype),
        f"({{0}} * {_HARDSIG})",
        None,
        f"WT_VMUL({{0}}, {_V_HARDSIG})",
    ),
}

# name: (NumPy meaning on (a, b), C for float, C for integers (None: float only), f32x4 or None)
BINARY: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], str | None, str | None, str | None]] = {
    "add": (np.add, "({0} + {1})", "({0} + {1})", "WT_VADD({0}, {1})"),
    "sub": (np.subtract, "({0} - {1})", "({0} - {1})", "WT_VSUB({0}, {1})"),
    "mul": (np.multiply, "({0} * {1})", "({0} * {1})", "WT_VMUL({0}, {1})"),
    "div": (lambda a, b: (a / b).astype(a.dtype), "({0} / {1})", None, "WT_VDIV({0}, {1})"),
    "floordiv": (_floordiv, "__builtin_floorf({0} / {1})", "wt_floordiv({0}, {1})", None),
    "remainder": (lambda a, b: np.mod(a, b), "wt_fmodf_py({0}, {1})", "wt_mod({0}, {1})", None),
    "pow": (lambda a, b: np.power(a.astype(np.float64), b).astype(a.dtype), "wt_powf({0}, {1})", None, None),
    "maximum": (np.maximum, "WT_MAX({0}, {1})", "WT_MAX({0}, {1})", "wasm_f32x4_pmax({1}, {0})"),
    "minimum": (np.minimum, "WT_MIN({0}, {1})", "WT_MIN({0}, {1})", "wasm_f32x4_pmin({1}, {0})"),
    "bitand": (np.bitwise_and, None, "({0} & {1})", None),
}
COMPARE: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], str]] = {
    "eq": (np.equal, "({0} == {1})"),
    "ne": (np.not_equal, "({0} != {1})"),
    "lt": (np.less, "({0} < {1})"),
    "le": (np.less_equal, "({0} <= {1})"),
    "gt": (np.greater, "({0} > {1})"),
    "ge": (np.greater_equal, "({0} >= {1})"),
    "logical_and": (np.logical_and, "({0} && {1})"),
    "logical_or": (np.logical_or, "({0} || {1})"),
    "logical_xor": (np.logical_xor, "(!{0} != !{1})"),
}
# pow with a constant exponent: the cases wt_powf special-cases, so vector and scalar agree
VECTOR_POW = {2.0: "WT_VMUL({0}, {0})", 3.0: "WT_VMUL(WT_VMUL({0}, {0}), {0})", 0.5: "wasm_f32x4_sqrt({0})"}


def _infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    shape = broadcast(*(x.shape for x in t))
    if n.op in COMPARE or n.op == "logical_not":
        return [TensorType("bool", shape)]
    if n.op == "where":
        return [TensorType(t[1].dtype, shape)]
    if n.op == "cast":
        return [TensorType(n.attrs["dtype"], shape)]
    return [TensorType(t[0].dtype, shape)]


def _flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    return numel(outs[0].shape)


def _by_kind(op: str, float_c: str | None, int_c: str | None) -> Callable[[str, str, dict[str, Any]], str]:
    def c_expr(in_dtype: str, out_dtype: str, attrs: dict[str, Any]) -> str:
        t = float_c if in_dtype == "f32" else int_c
        if t is None:
            raise UnsupportedOpError(f"elementwise op {op!r} on {in_dtype} tensors is not supported")
        return t

    return c_expr


def _fixed_vector(template: str | None) -> Callable[[dict[str, Any], list[float | None]], str | None] | None:
    return None if template is None else (lambda attrs, scalars: template)


def _ew(name: str, interp: Callable[..., np.ndarray], c_expr: Any, vector: Any) -> OpDef:
    def run(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
        with np.errstate(all="ignore"):  # log(0) = -inf, x / 0 = inf, NaN in NaN out: IEEE, like torch
            return [np.asarray(interp(n, args))]

    return OpDef(name, "elementwise", _infer, run, emit_elementwise, _flops, c_expr=c_expr, vector=vector)


for _name, (_fn, _fc, _ic, _vec) in UNARY.items():
    register(_ew(_name, lambda n, a, fn=_fn: fn(a[0], n), _by_kind(_name, _fc, _ic), _fixed_vector(_vec)))
for _name, (_fn, _fc, _ic, _vec) in BINARY.items():
    _vector = _fixed_vector(_vec)
    if _name == "pow":
        _vector = lambda attrs, scalars: VECTOR_POW.get(scalars[1])  # noqa: E731
    register(_ew(_name, lambda n, a, fn=_fn: fn(a[0], a[1]), _by_kind(_name, _fc, _ic), _vector))
for _name, (_fn, _c) in COMPARE.items():
    register(_ew(_name, lambda n, a, fn=_fn: fn(a[0], a[1]), _by_kind(_name, _c, _c), None))


def _clamp_c(in_dtype: str, out_dtype: str, attrs: dict[str, Any]) -> str:
    e = "{0}"
    if attrs.get("min") is not None:
        e = f"WT_MAX({e}, {literal(attrs['min'], in_dtype)})"
    if attrs.get("max") is not None:
        e = f"WT_MIN({e}, {literal(attrs['max'], in_dtype)})"
    return e


def _clamp_vector(attrs: dict[str, Any], scalars: list[float | None]) -> str:
    e = "{0}"
    if attrs.get("min") is not None:
        e = f"wasm_f32x4_pmax(wasm_f32x4_splat({literal(attrs['min'], 'f32')}), {e})"
    if attrs.get("max") is not None:
        e = f"wasm_f32x4_pmin(wasm_f32x4_splat({literal(attrs['max'], 'f32')}), {e})"
    return e


def _leaky_c(in_dtype: str, out_dtype: str, attrs: dict[str, Any]) -> str:
    return f"({{0}} >= 0 ? {{0}} : {{0}} * {literal(attrs['slope'], 'f32')})"


def _leaky_vector(attrs: dict[str, Any], scalars: list[float | None]) -> str:
    slope = literal(attrs["slope"], "f32")
    return f"wasm_v128_bitselect({{0}}, WT_VMUL({{0}}, WT_F4({slope})), wasm_f32x4_ge({{0}}, WT_F4(0.0f)))"


def _cast_c(in_dtype: str, out_dtype: str, attrs: dict[str, Any]) -> str:
    return "({0} != 0)" if out_dtype == "bool" else f"(({CTYPE[out_dtype]}){{0}})"


register(
    _ew("clamp", lambda n, a: _clamp(a[0], n), _clamp_c, _clamp_vector),
    _ew(
        "leaky_relu",
        lambda n, a: np.where(a[0] >= 0, a[0], a[0] * np.float32(n.attrs["slope"])).astype(a[0].dtype),
        _leaky_c,
        _leaky_vector,
    ),
    _ew("where", lambda n, a: np.where(a[0].astype(bool), a[1], a[2]), _by_kind("where", *["({0} ? {1} : {2})"] * 2), None),
    _ew("cast", lambda n, a: a[0].astype(DTYPES[n.attrs["dtype"]]), _cast_c, None),
)


def _fused_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [program_types(n.attrs["program"], t)[-1]]


def _fused_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    """The program's ops, one at a time (passes/fuse_elementwise.py builds it)."""
    from ..ir.op import op_def

    env = list(args)
    for s in n.attrs["program"]:
        env.extend(op_def(s.op).interp(Node(s.op, (), (), s.attrs), [env[i] for i in s.args], bind, []))
    return [env[-1]]


def _fused_flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    return numel(outs[0].shape) * len(program_of(n))


register(OpDef("fused_elementwise", "fused", _fused_infer, _fused_interp, emit_elementwise, _fused_flops))
