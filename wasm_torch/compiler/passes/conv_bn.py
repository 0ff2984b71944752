"""Fold inference batch norm and a following ReLU / ReLU6 into the convolution before it.

The frontend lowers `BatchNorm2d` in eval mode to `y * scale + shift` with per-channel constants
(constant folding computes them), so after a conv with constant weights the graph holds
`conv2d -> mul(scale) -> add(shift) -> relu | clamp(0, 6)`. This pass rewrites that chain (any
prefix of it: a lone mul, a lone add, a lone activation) into one `conv2d` with
    W' = W * scale[oc],   b' = b * scale + shift,   attrs["act"] = "relu" | "relu6"
so the kernels apply bias and clamp in their epilogue and no elementwise pass over the output is
left. A step is folded only when the intermediate value has exactly one user and is not a graph
output, and the constant varies at most along the channel axis.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir.graph import Graph, Node, TensorType


def _per_channel(c: np.ndarray, oc: int) -> np.ndarray | None:
    """The constant as a length-oc vector if it broadcasts over NCHW along channels only, else None."""
    if c.ndim > 4 or c.dtype != np.float32:
        return None
    c4 = c.reshape((1,) * (4 - c.ndim) + c.shape)
    if c4.shape[0] != 1 or c4.shape[2:] != (1, 1) or c4.shape[1] not in (1, oc):
        return None
    return np.broadcast_to(c4.reshape(-1), (oc,)).astype(np.float64)


def _act(n: Node) -> str | None:
    if n.op == "relu":
        return "relu"
    if n.op == "clamp" and n.attrs.get("min") == 0:
        hi = n.attrs.get("max")
        if hi is None or math.isinf(hi):
            return "relu"
        if hi == 6:
            return "relu6"
    return None


def fold_conv_bn(g: Graph) -> Graph:
    users = g.users()
    consts, types = dict(g.consts), dict(g.types)
    drop: set[int] = set()  # ids of nodes folded into a conv
    replace: dict[int, Node] = {}

    def only_user(v: str) -> Node | None:
        us = users.get(v, [])
        return us[0] if len(us) == 1 and v not in g.outputs else None

    for conv in g.nodes:
        w = conv.inputs[1] if conv.op == "conv2d" else ""
        if w not in consts or types[conv.outputs[0]].dtype != "f32" or conv.attrs.get("act"):
            continue
        oc = consts[w].shape[0]
        out_t = types[conv.outputs[0]]
        scale, shift, act = np.ones(oc), np.zeros(oc), None
        y, chain = conv.outputs[0], []
        for step in ("mul", "add", "act"):
            u = only_user(y)
            if u is None or types[u.outputs[0]] != out_t:
                break
            other = [i for i in u.inputs if i != y]
            if step == "act":
                act = _act(u) if len(u.inputs) == 1 else None
                if act is None:
                    break
            else:
                ok_ops = ("mul",) if step == "mul" else ("add", "sub")
                vec = _per_channel(consts[other[0]], oc) if len(other) == 1 and other[0] in consts else None
                if u.op not in ok_ops or vec is None or (u.op == "sub" and u.inputs[0] != y):
                    continue  # this step is absent; try the next one on the same value
                if u.op == "mul":
                    scale = scale * vec
                else:
                    shift = shift + (vec if u.op == "add" else -vec)
            chain.append(u)
            y = u.outputs[0]
        if not chain:
            continue
        bias = conv.inputs[2] if len(conv.inputs) > 2 else ""
        if bias and bias not in consts:
            continue  # a runtime bias: leave this conv alone
        name = conv.outputs[0]
        w_new = (consts[w].astype(np.float64) * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
        b = consts[bias].astype(np.float64) if bias else np.zeros(oc)
        b_new = (b * scale + shift).astype(np.float32)
        for cname, arr in ((f"{name}_wfold", w_new), (f"{name}_bfold", b_new)):
            consts[cname] = arr
            types[cname] = TensorType("f32", arr.shape)
        attrs = dict(conv.attrs, **({"act": act} if act else {}))
        replace[id(conv)] = Node(
            "conv2d", (conv.inputs[0], f"{name}_wfold", f"{name}_bfold"), (y,), attrs, conv.source
        )
        drop.update(id(u) for u in chain)
    nodes = tuple(replace.get(id(n), n) for n in g.nodes if id(n) not in drop)
    return g.replace(nodes=nodes, consts=consts, types=types)
