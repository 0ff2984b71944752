"""Every IR op, one file per family: its shape rule, NumPy meaning, C emitter and work (ir/op.py).

Importing this package registers them all; `wasm_torch.compiler` does so on import.
"""

from . import (  # model-zoo coverage: interpolation, transposed conv, scatter, norms, sort, ...
    attention,
    conv,
    conv_transpose,
    elementwise,
    elementwise_more,
    index,
    kv_attention,
    matmul,
    movement,
    norm,
    pool,
    quant,  # reduced-precision weights (fp16, int8)
    reduce,
    resize,
    scatter,
)

__all__ = [
    "attention",
    "conv",
    "conv_transpose",
    "elementwise",
    "elementwise_more",
    "index",
    "kv_attention",
    "matmul",
    "movement",
    "norm",
    "pool",
    "quant",
    "reduce",
    "resize",
    "scatter",
]
