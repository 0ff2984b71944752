"""Recognise a causal attention mask, so the fused attention kernel can skip the tiles above the diagonal.

A mask (seen as the logical (B, H, Lq, Lk) tensor through a strided view) is causal when it is 0 where
key j <= query i and -inf (or float32's lowest, which gives the same exact zeros after exp) above, for
every batch and head: a constant holding exactly those values, or, for dynamic lengths, the subgraph
torch.export makes of F.scaled_dot_product_attention(is_causal=True), recognised structurally.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Dim, Graph, Node
from .strided_view import same

F32_LOWEST = float(np.finfo(np.float32).min)


def _scalar(g: Graph, v: str) -> float | None:
    c = g.consts.get(v)
    return float(c.reshape(())) if c is not None and c.size == 1 else None


def is_causal_mask(
    g: Graph, root: str, offset: Dim, strides: list[Dim], logical: tuple[Dim, Dim, Dim, Dim]
) -> bool:
    """True if the mask is 0 where key j <= query i and -inf (or float32's lowest) above, for every b, h:
    a constant with exactly those values, or torch's `is_causal` subgraph for dynamic lengths."""
    if root in g.consts:
        if not all(isinstance(d, int) for d in (*logical, offset, *strides)):
            return False
        arr = np.ascontiguousarray(g.consts[root]).reshape(-1)
        item = arr.itemsize
        view = np.lib.stride_tricks.as_strided(
            arr[offset:], logical, [s * item for s in strides], writeable=False
        )
        Lq, Lk = logical[2], logical[3]
        below = np.arange(Lk)[None, :] <= np.arange(Lq)[:, None]
        return bool(np.all(np.where(below, view == 0, (view == -np.inf) | (view == F32_LOWEST))))
    return _is_causal_subgraph(g, root, g.producers(), logical)


def _is_causal_subgraph(g: Graph, v: str, prod: dict[str, Node], logical: tuple[Dim, Dim, Dim, Dim]) -> bool:
    """where(le(j - i, 0) [& full(True)], 0, -inf) with i = arange(Lq) as (Lq, 1) and j = arange(Lk) as
    (1, Lk): how torch.export decomposes F.scaled_dot_product_attention(is_causal=True)."""
    w = prod.get(v)
    if w is None or w.op != "where" or _scalar(g, w.inputs[1]) != 0.0 or _scalar(g, w.inputs[2]) != -np.inf:
        return False
    if g.types[v].shape != (logical[2], logical[3]):
        return False
    cond = prod.get(w.inputs[0])
    if cond is not None and cond.op == "logical_and":
        rest = [i for i in cond.inputs if not _all_true(g, i, prod)]
        if len(rest) != 1:
            return False
        cond = prod.get(rest[0])
    if (
        cond is None
        or cond.op != "le"
        or g.consts.get(cond.inputs[1]) is None
        or g.consts[cond.inputs[1]].any()
    ):
        return False
    sub = prod.get(cond.inputs[0])
    if sub is None or sub.op != "sub":
        return False
    j, i = (_arange_along(g, s, prod) for s in sub.inputs)
    return j == ("row", logical[3]) and i == ("col", logical[2])


def _all_true(g: Graph, v: str, prod: dict[str, Node]) -> bool:
    n = prod.get(v)
    if n is not None:
        return n.op == "full" and n.attrs["value"] is True
    return v in g.consts and g.types[v].dtype == "bool" and bool(g.consts[v].all())


def _arange_along(g: Graph, v: str, prod: dict[str, Node]) -> tuple[str, Dim] | None:
    """("row", n) for arange(n) reshaped to (1, n); ("col", n) for (n, 1); node or folded constant."""
    shape = g.types[v].shape
    if len(shape) != 2:
        return None
    if v in g.consts:
        c = g.consts[v].reshape(-1)
        if not np.array_equal(c, np.arange(c.size)):
            return None
        n: Dim = c.size
    else:
        r = prod.get(v)
        a = prod.get(r.inputs[0]) if r is not None and r.op == "reshape" else None
        if a is None or a.op != "arange" or a.attrs["start"] != 0 or a.attrs["step"] != 1:
            return None
        n = a.attrs["end"]
    if same(shape[0], 1) and same(shape[1], n):
        return ("row", shape[1])
    if same(shape[1], 1) and same(shape[0], n):
        return ("col", shape[0])
    return None
