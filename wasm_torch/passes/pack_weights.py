"""Pack constant GEMM weights into 8-column panels at compile time (XNNPACK-style).

`matmul(x, W)` with a constant 2-D float32 W of shape (K, N) becomes `matmul_packed(x, Wp)` where
Wp has shape (ceil(N/8), K, 8): panel p holds columns 8p..8p+7 for every k, zero-padded past N.
The kernel then streams each panel contiguously instead of striding across W's rows.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node, TensorType

PANEL = 8


def pack(w: np.ndarray) -> np.ndarray:
    k, n = w.shape
    p = -(-n // PANEL)
    padded = np.zeros((k, p * PANEL), np.float32)
    padded[:, :n] = w
    return np.ascontiguousarray(padded.reshape(k, p, PANEL).transpose(1, 0, 2))


def pack_weights(g: Graph) -> Graph:
    consts, types = dict(g.consts), dict(g.types)
    nodes = []
    for n in g.nodes:
        b = n.inputs[1] if n.op == "matmul" else ""
        if b in consts and consts[b].ndim == 2 and types[b].dtype == "f32":
            name = f"{b}_packed"
            if name not in consts:
                consts[name] = pack(consts[b])
                types[name] = TensorType("f32", tuple(consts[name].shape))
            n = Node(
                "matmul_packed",
                (n.inputs[0], name, *n.inputs[2:]),
                n.outputs,
                {"n": int(consts[b].shape[1])},
                n.source,
            )
        nodes.append(n)
    return g.replace(nodes=tuple(nodes), consts=consts, types=types)
