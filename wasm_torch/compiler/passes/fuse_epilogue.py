"""Fold a bias add and an activation that follow a packed GEMM into its epilogue.

`wt_gemm_packed_act_f32` adds the bias and applies relu / gelu / gelu_tanh to the accumulators
before it stores them, so the output is written once instead of being re-read and re-written by
an elementwise pass. This pass rewrites

    y = matmul_packed(x, Wp[, b]) -> [reshape ...] -> [add(., c)] -> [reshape ...] -> act(.)

into `matmul_packed(x, Wp, b) act=...` followed by the same reshapes (they only rename storage).
`c` folds as the bias when the matmul has none and `c` is a float32 constant holding one value per
output column (shape (N,) or (1, ..., N)). Every intermediate value must have exactly one use and
not be a graph output; otherwise nothing is fused (the unfused value is still needed).
Runs after pack_weights (it only touches `matmul_packed`).
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node, TensorType
from ..ops.matmul import GEMM_ACTS


def fuse_epilogue(g: Graph) -> Graph:
    while True:
        fused = _fuse_one(g)
        if fused is None:
            return g
        g = fused


def _fuse_one(g: Graph) -> Graph | None:
    users = g.users()

    def only_user(v: str) -> Node | None:
        us = users.get(v, [])
        return us[0] if len(us) == 1 and v not in g.outputs else None

    for mm in g.nodes:
        if mm.op != "matmul_packed" or mm.attrs.get("act"):
            continue
        chain = [mm]  # mm, then single-use reshapes: the last one's output is what the epilogue op reads
        nxt = only_user(mm.outputs[0])
        while nxt is not None and nxt.op == "reshape":
            chain.append(nxt)
            nxt = only_user(nxt.outputs[0])
        if nxt is None:
            continue
        end = chain[-1].outputs[0]
        if nxt.op in GEMM_ACTS and nxt.inputs[0] == end:
            return _absorb(g, chain, nxt, {**mm.attrs, "act": nxt.op}, mm.inputs)
        bias = _bias_const(g, mm, nxt, end)
        if bias is not None:
            name, consts, types = bias
            g = g.replace(consts=consts, types=types)
            return _absorb(g, chain, nxt, dict(mm.attrs), (mm.inputs[0], mm.inputs[1], name))
    return None


def _absorb(g: Graph, chain: list[Node], op: Node, attrs: dict, mm_inputs: tuple[str, ...]) -> Graph:
    """Drop `op`; the chain's last node now defines op's output (same type: op is shape-preserving)."""
    mm = chain[0]
    new = [Node(mm.op, mm_inputs, mm.outputs, attrs, mm.source), *chain[1:]]
    new[-1] = Node(new[-1].op, new[-1].inputs, op.outputs, new[-1].attrs, new[-1].source)
    swap = {id(old): n for old, n in zip(chain, new, strict=True)}
    nodes = tuple(swap.get(id(n), n) for n in g.nodes if n is not op)
    return g.replace(nodes=nodes, types={k: t for k, t in g.types.items() if k != chain[-1].outputs[0]})


def _bias_const(
    g: Graph, mm: Node, add: Node, end: str
) -> tuple[str, dict[str, np.ndarray], dict[str, TensorType]] | None:
    """If `add` adds a per-column float32 constant to `end`, the bias input for `mm` (name, consts, types)."""
    if add.op != "add" or (len(mm.inputs) > 2 and mm.inputs[2]) or end not in add.inputs:
        return None
    other = add.inputs[1] if add.inputs[0] == end else add.inputs[0]
    n = mm.attrs["n"]
    c, t_end = g.consts.get(other), g.types[end]
    if c is None or c.dtype != np.float32 or c.size != n or (c.ndim and c.shape[-1] != n):
        return None
    if c.ndim > len(t_end.shape) or g.types[add.outputs[0]] != t_end:  # the add must not broadcast `end`
        return None
    if not t_end.shape or t_end.shape[-1] != n:
        return None
    if c.ndim == 1:
        return other, dict(g.consts), dict(g.types)
    name = f"{other}_bias"
    consts, types = dict(g.consts), dict(g.types)
    consts[name] = np.ascontiguousarray(c.reshape(n))
    types[name] = TensorType("f32", (n,))
    return name, consts, types
