"""Op -> C expression table for elementwise ops (the tinygrad habit: render C from tables).

Templates use {0}, {1}, {2} for operands; `T` is the output's C type. Functions prefixed wt_
live in kernels/wt_base.h.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import UnsupportedOpError

CTYPE = {
    "f32": "float",
    "i64": "int64_t",
    "i32": "int32_t",
    "u8": "uint8_t",
    "i8": "int8_t",
    "bool": "uint8_t",
}

FLOAT_ONLY = {
    "gelu": "wt_geluf({0})",
    "gelu_tanh": "wt_gelu_tanhf({0})",
    "silu": "({0} * wt_sigmoidf({0}))",
    "sigmoid": "wt_sigmoidf({0})",
    "tanh": "wt_tanhf({0})",
    "exp": "wt_expf({0})",
    "log": "wt_logf({0})",
    "log1p": "wt_log1pf({0})",
    "sqrt": "__builtin_sqrtf({0})",
    "rsqrt": "(1.0f / __builtin_sqrtf({0}))",
    "erf": "wt_erff({0})",
    "sin": "wt_sinf({0})",
    "cos": "wt_cosf({0})",
    "reciprocal": "(1.0f / {0})",
    "hardsigmoid": "WT_MIN(WT_MAX({0} * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f)",
    "hardswish": "({0} * WT_MIN(WT_MAX({0} * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f))",
    "pow": "wt_powf({0}, {1})",
    "div": "({0} / {1})",
}
COMMON = {
    "neg": "(-{0})",
    "relu": "({0} > 0 ? {0} : 0)",
    "copy": "{0}",
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "mul": "({0} * {1})",
    "maximum": "WT_MAX({0}, {1})",
    "minimum": "WT_MIN({0}, {1})",
    "eq": "({0} == {1})",
    "ne": "({0} != {1})",
    "lt": "({0} < {1})",
    "le": "({0} <= {1})",
    "gt": "({0} > {1})",
    "ge": "({0} >= {1})",
    "logical_and": "({0} && {1})",
    "logical_or": "({0} || {1})",
    "logical_xor": "(!{0} != !{1})",
    "logical_not": "(!{0})",
    "where": "({0} ? {1} : {2})",
}
BY_KIND = {
    "abs": ("__builtin_fabsf({0})", "({0} < 0 ? -{0} : {0})"),
    "floor": ("__builtin_floorf({0})", "{0}"),
    "ceil": ("__builtin_ceilf({0})", "{0}"),
    "floordiv": ("__builtin_floorf({0} / {1})", "wt_floordiv({0}, {1})"),
    "remainder": ("wt_fmodf_py({0}, {1})", "wt_mod({0}, {1})"),
    "bitand": (None, "({0} & {1})"),
}


def literal(value: object, dtype: str) -> str:
    """A C literal for a scalar of `dtype` (inf/nan spelled with builtins)."""
    if dtype == "f32":
        v = float(np.float32(value))
        if math.isnan(v):
            return '__builtin_nanf("")'
        if math.isinf(v):
            return "__builtin_inff()" if v > 0 else "(-__builtin_inff())"
        return f"{v!r}f" if "e" in repr(v) or "." in repr(v) else f"{v!r}.0f"
    if dtype == "bool":
        return "1" if bool(value) else "0"
    if dtype == "i64":
        return f"((int64_t){int(value)}LL)"
    return f"(({CTYPE[dtype]}){int(value)})"


def expr(op: str, in_dtype: str, out_dtype: str, attrs: dict) -> str:
    """The C expression template for an elementwise op."""
    is_float = in_dtype == "f32"
    if op == "cast":
        return "({0} != 0)" if out_dtype == "bool" else f"(({CTYPE[out_dtype]}){{0}})"
    if op == "clamp":
        e = "{0}"
        if attrs.get("min") is not None:
            e = f"WT_MAX({e}, {literal(attrs['min'], in_dtype)})"
        if attrs.get("max") is not None:
            e = f"WT_MIN({e}, {literal(attrs['max'], in_dtype)})"
        return e
    if op == "leaky_relu":
        return f"({{0}} >= 0 ? {{0}} : {{0}} * {literal(attrs['slope'], 'f32')})"
    if op in COMMON:
        return COMMON[op]
    if op in BY_KIND:
        t = BY_KIND[op][0 if is_float else 1]
        if t is not None:
            return t
    if op in FLOAT_ONLY and is_float:
        return FLOAT_ONLY[op]
    raise UnsupportedOpError(f"elementwise op {op!r} on {in_dtype} tensors is not supported")
