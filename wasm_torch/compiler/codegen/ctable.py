"""C spellings of IR dtypes and scalar literals (the elementwise templates are op facets: ops/elementwise.py)."""

from __future__ import annotations

import math

import numpy as np

CTYPE = {
    "f32": "float",
    "i64": "int64_t",
    "i32": "int32_t",
    "u8": "uint8_t",
    "i8": "int8_t",
    "bool": "uint8_t",
    "f16": "uint16_t",  # IEEE half bits; read through wt_f16_to_f32 (kernels/wt_quant.h)
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
