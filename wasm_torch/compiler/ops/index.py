"""Indexing and creation: gather, index, scatter of a value, arange, full.

Every index read by generated code goes through `wt_check_index(i, n)` (kernels/wt_base.h), which
traps on an index outside [0, n): the runtime turns that trap into IndexOutOfRange, so bad token
ids are a clear error, never a read outside the tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from ..codegen.ctable import CTYPE, literal
from ..codegen.dims import c_dim
from ..codegen.loops import broadcast_strides, contiguous_strides
from ..ir.graph import DTYPES, Node, TensorType, dim, evaluate_dim, evaluate_shape, numel
from ..ir.op import OpDef, broadcast, register, same


def _out_numel(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    return numel(outs[0].shape)


# ---- gather (torch.gather) -----------------------------------------------------------------------
def _gather_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    """torch semantics: the index may be smaller than x along every axis."""
    pos = list(np.indices(args[1].shape, sparse=True))
    pos[n.attrs["axis"]] = args[1]
    return [args[0][tuple(pos)]]


def _emit_gather(em: Any, n: Node) -> None:
    x, idx = n.inputs[0], n.inputs[1]
    out, axis = n.outputs[0], n.attrs["axis"]
    shape = em.t(out).shape
    xs = contiguous_strides(em.t(x).shape)
    xsel = [0 if j == axis else s for j, s in enumerate(xs)]
    lim, step = c_dim(em.t(x).shape[axis]), c_dim(xs[axis])

    def body(o: list[str]) -> None:
        i = f"wt_check_index({em.at(idx, o[2])}, {lim})"
        em.w.line(f"{em.var(out)}[{o[0]}] = {em.var(x)}[{o[1]} + {i} * {step}];")

    cs = contiguous_strides(shape)
    em.loops(shape, [cs, xsel, cs], ["0", "0", "0"], body)


# ---- index (x[i0, i1, ...] with tensor indices on the leading axes) ------------------------------
def _index_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x, idx = t[0], t[1:]
    return [TensorType(x.dtype, (*broadcast(*(i.shape for i in idx)), *x.shape[len(idx) :]))]


def _index_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    x = args[0]
    idx = [np.where(i < 0, i + x.shape[k], i) for k, i in enumerate(args[1:])]
    return [x[tuple(idx)]]


def _emit_index(em: Any, n: Node) -> None:
    x, idxs, out = n.inputs[0], n.inputs[1:], n.outputs[0]
    ot, xt = em.t(out), em.t(x)
    k = len(idxs)
    nb = ot.rank - (xt.rank - k)
    bshape = ot.shape[:nb]
    xs = contiguous_strides(xt.shape)
    strides = [contiguous_strides(ot.shape), [0] * nb + xs[k:]]
    for i in idxs:
        strides.append(broadcast_strides(em.t(i).shape, bshape) + [0] * (ot.rank - nb))

    def body(o: list[str]) -> None:
        terms = [o[1]] + [
            f"wt_check_index({em.at(i, o[2 + j])}, {c_dim(xt.shape[j])}) * {c_dim(xs[j])}"
            for j, i in enumerate(idxs)
        ]
        em.w.line(f"{em.var(out)}[{o[0]}] = {em.var(x)}[{' + '.join(terms)}];")

    em.loops(ot.shape, strides, ["0"] * len(strides), body)


# ---- scatter of one value (torch.scatter(x, axis, index, value)) ---------------------------------
def _scatter_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    out = args[0].copy()
    pos = list(np.indices(args[1].shape, sparse=True))
    pos[n.attrs["axis"]] = args[1]
    out[tuple(pos)] = n.attrs["value"]
    return [out]


def _emit_scatter_value(em: Any, n: Node) -> None:
    x, idx, out = n.inputs[0], n.inputs[1], n.outputs[0]
    xt, axis = em.t(x), n.attrs["axis"]
    xs = contiguous_strides(xt.shape)
    em.copy_loop(xt.shape, out, xs, "0", x, xs, "0")
    xsel = [0 if j == axis else s for j, s in enumerate(xs)]
    ishape = em.t(idx).shape
    lim, step = c_dim(xt.shape[axis]), c_dim(xs[axis])
    val = literal(n.attrs["value"], xt.dtype)

    def body(o: list[str]) -> None:
        i = f"wt_check_index({em.at(idx, o[1])}, {lim})"
        em.w.line(f"{em.var(out)}[{o[0]} + {i} * {step}] = {val};")

    em.loops(ishape, [xsel, contiguous_strides(ishape)], ["0", "0"], body)


# ---- arange / full -------------------------------------------------------------------------------
def _arange_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    start, end, step = n.attrs["start"], n.attrs["end"], n.attrs["step"]
    length = dim(end - start)
    size = (
        dim(sympy.ceiling(length / step))
        if isinstance(length, sympy.Expr)
        else max(0, -(-length // step) if step > 0 else -(length // step))
    )
    return [TensorType(n.attrs["dtype"], (size,))]


def _arange_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    a = n.attrs
    start, end = evaluate_dim(a["start"], bind), evaluate_dim(a["end"], bind)
    return [np.arange(start, end, a["step"]).astype(DTYPES[a["dtype"]])]


def _emit_arange(em: Any, n: Node) -> None:
    out, a = n.outputs[0], n.attrs
    ct = CTYPE[a["dtype"]]
    with em.w.block(f"for (int i = 0; i < {c_dim(em.t(out).shape[0])}; i++)"):
        em.w.line(f"{em.var(out)}[i] = ({ct})({c_dim(a['start'])} + (int64_t)i * {a['step']});")


def _full_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [TensorType(n.attrs["dtype"], tuple(n.attrs["shape"]))]


def _full_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    a = n.attrs
    return [np.full(evaluate_shape(a["shape"], bind), a["value"], DTYPES[a["dtype"]])]


def _emit_full(em: Any, n: Node) -> None:
    out, a = n.outputs[0], n.attrs
    ot = em.t(out)
    v = a["value"]
    val = f"({CTYPE[ot.dtype]})({c_dim(v)})" if isinstance(v, sympy.Expr) else literal(v, ot.dtype)
    em.loops(ot.shape, [contiguous_strides(ot.shape)], ["0"], lambda o: em.w.line(f"{em.var(out)}[{o[0]}] = {val};"))


register(
    OpDef(
        "gather",
        "index",
        lambda n, t: [TensorType(t[0].dtype, t[1].shape)],
        _gather_interp,
        _emit_gather,
        _out_numel,
    ),
    OpDef("index", "index", _index_infer, _index_interp, _emit_index, _out_numel),
    OpDef("scatter_value", "index", same, _scatter_interp, _emit_scatter_value, _out_numel),
    OpDef("arange", "create", _arange_infer, _arange_interp, _emit_arange, _out_numel),
    OpDef("full", "create", _full_infer, _full_interp, _emit_full, _out_numel),
)
