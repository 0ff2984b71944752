"""Every IR op, one file per family: its shape rule, NumPy meaning, C emitter and work (ir/op.py).

Importing this package registers them all; `wasm_torch.compiler` does so on import.
"""

from . import attention, conv, elementwise, index, matmul, movement, norm, pool, reduce

__all__ = ["attention", "conv", "elementwise", "index", "matmul", "movement", "norm", "pool", "reduce"]
