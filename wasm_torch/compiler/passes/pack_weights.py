"""Pack constant GEMM weights into 16-column panels at compile time (XNNPACK-style).

`matmul(x, W)` with a constant 2-D float32 W of shape (K, N) becomes `matmul_packed(x, Wp)` where
Wp has shape (ceil(N/16), K, 16): panel p holds columns 16p..16p+15 for every k, zero-padded past N.
The kernel (kernels/wt_gemm_packed.h, 2x16 register tile) then streams each panel contiguously
instead of striding across W's rows. PANEL must equal WT_GEMM_NR in that header.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node, TensorType

PANEL = 16


def pack(w: np.ndarray) -> np.ndarray:
    """(K, N) -> (ceil(N/PANEL), K, PANEL) float32, zero-padded past N."""
    k, n = w.shape
    p = -(-n // PANEL)
    padded = np.zeros((k, p * PANEL), np.float32)
    padded[:, :n] = w
    return np.ascontiguousarray(padded.reshape(k, p, PANEL).transpose(1, 0, 2))


def _constant_weight(g: Graph, n: Node) -> tuple[str, np.ndarray] | None:
    """(const name, its (K, N) array) if `n` multiplies by a constant float32 matrix shared by every row.

    Either B is a 2-D constant, or B is a constant of shape (1, ..., 1, K, N) expanded (maybe through
    reshapes) over batch dims that A has too (a batched matmul whose weight is the same per batch).
    """
    b = n.inputs[1]
    if g.types[b].dtype != "f32":
        return None
    if b in g.consts:
        return (b, g.consts[b]) if g.consts[b].ndim == 2 else None
    producers = g.producers()
    src = producers.get(b)
    while src is not None and src.op == "reshape":
        src = producers.get(src.inputs[0])
    if src is None or src.op != "expand" or src.inputs[0] not in g.consts:
        return None
    c = g.consts[src.inputs[0]]
    a, out = g.types[n.inputs[0]], g.types[n.outputs[0]]
    if c.ndim < 2 or any(d != 1 for d in c.shape[:-2]) or a.shape[:-2] != out.shape[:-2]:
        return None
    return src.inputs[0], c.reshape(c.shape[-2:])


def pack_weights(g: Graph) -> Graph:
    consts, types = dict(g.consts), dict(g.types)
    nodes = []
    for n in g.nodes:
        w = _constant_weight(g, n) if n.op == "matmul" else None
        if w is not None:
            b, mat = w
            name = f"{b}_packed"
            if name not in consts:
                consts[name] = pack(mat)
                types[name] = TensorType("f32", tuple(consts[name].shape))
            n = Node(
                "matmul_packed",
                (n.inputs[0], name, *n.inputs[2:]),
                n.outputs,
                {"n": int(mat.shape[1])},
                n.source,
            )
        nodes.append(n)
    return g.replace(nodes=tuple(nodes), consts=consts, types=types)
