"""Writes into a copy and strided reads: slice_scatter, scatter (src, add), index_put, as_strided.

IR values are immutable, so every "in-place" write of a model (Swin's `mask[h0:h1, w0:w1] = k`,
`x.scatter_add_(...)`, `x[idx] = v`) is a new value: a copy of the input with the written part
replaced. The copy and the write are strided loops; scattered indices go through
`wt_check_index` (an index out of range traps and becomes IndexOutOfRange, never a stray write).

- `slice_scatter(x, src)`: attrs axis, start, step — out = x; out[..., start::step (len src), ...] = src.
- `scatter(x, index, src)`: attrs axis, reduce ("none" | "add" | "mul" | "amax" | "amin") — torch.scatter /
  scatter_add / scatter_reduce(include_self=True): out = x; out[.. index[i] ..] (op)= src[i].
- `index_put(x, v, i0, i1, ...)`: attrs accumulate — out = x; out[i0, i1, ...] (+)= v, tensor indices on
  the leading axes (broadcast together), v broadcast to the indexed shape.
- `as_strided(x)`: attrs size, stride, offset — reads the contiguous buffer of x with the given element
  strides (what `aten.as_strided` means on a contiguous tensor; negative strides read backwards: flip).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from ...errors import GraphError
from ..codegen.dims import c_dim
from ..codegen.loops import broadcast_strides, contiguous_strides
from ..ir.graph import Node, TensorType, evaluate_dim, numel
from ..ir.op import OpDef, broadcast, register

REDUCE_C = {
    "none": "{o} = {v};",
    "add": "{o} += {v};",
    "mul": "{o} *= {v};",
    "amax": "if ({v} > {o} || {v} != {v}) {o} = {v};",
    "amin": "if ({v} < {o} || {v} != {v}) {o} = {v};",
}


def _out_numel(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    return numel(outs[0].shape)


def _copy_input(em: Any, x: str, out: str) -> None:
    xt = em.t(x)
    cs = contiguous_strides(xt.shape)
    em.copy_loop(xt.shape, out, cs, "0", x, cs, "0")


# ---- slice_scatter --------------------------------------------------------------------------------
def _slice_scatter_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x, src = t[0], t[1]
    if x.rank != src.rank or x.dtype != src.dtype:
        raise GraphError(f"slice_scatter: src {src} does not fit x {x}")
    return [x]


def _slice_scatter_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    x, src, a = args[0], args[1], n.attrs
    out = x.copy()
    s = [slice(None)] * x.ndim
    start = evaluate_dim(a["start"], bind)
    s[a["axis"]] = slice(start, start + a["step"] * (src.shape[a["axis"]] - 1) + 1, a["step"])
    out[tuple(s)] = src
    return [out]


def _emit_slice_scatter(em: Any, n: Node) -> None:
    x, src, out, a = n.inputs[0], n.inputs[1], n.outputs[0], n.attrs
    _copy_input(em, x, out)
    os = contiguous_strides(em.t(out).shape)
    dst = list(os)
    dst[a["axis"]] = os[a["axis"]] * a["step"]
    st = em.t(src)
    em.copy_loop(st.shape, out, dst, c_dim(sympy.expand(a["start"] * os[a["axis"]])), src, contiguous_strides(st.shape), "0")


# ---- scatter --------------------------------------------------------------------------------------
def _scatter_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    x, idx, src = args
    axis, red = n.attrs["axis"], n.attrs["reduce"]
    out = x.copy()
    src = np.broadcast_to(src, idx.shape) if src.ndim == 0 else src[tuple(slice(0, s) for s in idx.shape)]
    for pos in np.ndindex(*idx.shape):
        j = int(idx[pos])
        j = j + x.shape[axis] if j < 0 else j
        if not 0 <= j < x.shape[axis]:
            raise IndexError(f"scatter index {idx[pos]} out of range for size {x.shape[axis]}")
        dst = list(pos)
        dst[axis] = j
        dst_t, v = tuple(dst), src[pos]
        if red == "none":
            out[dst_t] = v
        elif red == "add":
            out[dst_t] += v
        elif red == "mul":
            out[dst_t] *= v
        elif red == "amax":
            out[dst_t] = v if (v > out[dst_t] or v != v) else out[dst_t]
        else:
            out[dst_t] = v if (v < out[dst_t] or v != v) else out[dst_t]
    return [out]


def _scatter_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    if n.attrs["reduce"] not in REDUCE_C:
        raise GraphError(f"scatter reduce={n.attrs['reduce']!r}: expected one of {sorted(REDUCE_C)}")
    x, idx, src = t
    if idx.rank != x.rank or (src.rank not in (0, x.rank)) or src.dtype != x.dtype:
        raise GraphError(f"scatter: index {idx} / src {src} do not fit x {x}")
    return [x]


def _emit_scatter(em: Any, n: Node) -> None:
    x, idx, src = n.inputs
    out, a = n.outputs[0], n.attrs
    _copy_input(em, x, out)
    xt, it, st = em.t(x), em.t(idx), em.t(src)
    xs = contiguous_strides(xt.shape)
    axis = a["axis"]
    xsel = [0 if j == axis else s for j, s in enumerate(xs)]
    ss = contiguous_strides(st.shape) if st.rank else [0] * it.rank
    lim, step = c_dim(xt.shape[axis]), c_dim(xs[axis])

    def body(o: list[str]) -> None:
        j = f"wt_check_index({em.at(idx, o[1])}, {lim})"
        dst = f"{em.var(out)}[{o[0]} + {j} * {step}]"
        em.w.line("{ " + REDUCE_C[a["reduce"]].format(o=dst, v=em.at(src, o[2])) + " }")

    em.loops(it.shape, [xsel, contiguous_strides(it.shape), ss], ["0", "0", "0"], body)


# ---- index_put ------------------------------------------------------------------------------------
def _index_put_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x, v, idx = t[0], t[1], t[2:]
    if not idx or len(idx) > x.rank or v.dtype != x.dtype:
        raise GraphError(f"index_put: {len(idx)} indices / values {v} do not fit {x}")
    return [x]


def _index_put_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    x, v, idx = args[0], args[1], args[2:]
    out = x.copy()
    bshape = broadcast(*(i.shape for i in idx))
    ii = [np.broadcast_to(np.where(i < 0, i + x.shape[k], i), bshape) for k, i in enumerate(idx)]
    vals = np.broadcast_to(v, (*bshape, *x.shape[len(idx) :]))
    if n.attrs["accumulate"]:
        np.add.at(out, tuple(ii), vals)
    else:
        for pos in np.ndindex(*bshape):  # in order: the last write wins, like the C loop
            out[tuple(i[pos] for i in ii)] = vals[pos]
    return [out]


def _emit_index_put(em: Any, n: Node) -> None:
    x, v, idxs = n.inputs[0], n.inputs[1], n.inputs[2:]
    out = n.outputs[0]
    _copy_input(em, x, out)
    xt = em.t(x)
    k = len(idxs)
    bshape = broadcast(*(em.t(i).shape for i in idxs))
    shape = (*bshape, *xt.shape[k:])
    xs = contiguous_strides(xt.shape)
    strides = [[0] * len(bshape) + xs[k:], broadcast_strides(em.t(v).shape, shape)]
    for i in idxs:
        strides.append(broadcast_strides(em.t(i).shape, bshape) + [0] * (xt.rank - k))
    op = "+=" if n.attrs["accumulate"] else "="

    def body(o: list[str]) -> None:
        terms = [o[0]] + [
            f"wt_check_index({em.at(i, o[2 + j])}, {c_dim(xt.shape[j])}) * {c_dim(xs[j])}" for j, i in enumerate(idxs)
        ]
        em.w.line(f"{em.var(out)}[{' + '.join(terms)}] {op} {em.at(v, o[1])};")

    em.loops(shape, strides, ["0"] * len(strides), body)


# ---- as_strided -----------------------------------------------------------------------------------
def _as_strided_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x, a = t[0], n.attrs
    size, stride, off = a["size"], a["stride"], a["offset"]
    if len(size) != len(stride):
        raise GraphError("as_strided: size and stride differ in length")
    if all(isinstance(d, int) for d in (*size, *stride, off, *x.shape)):
        spans = [(s - 1) * st for s, st in zip(size, stride, strict=True) if s > 0]
        lo, hi = off + sum(v for v in spans if v < 0), off + sum(v for v in spans if v > 0)
        if numel(size) and (lo < 0 or hi >= numel(x.shape)):
            raise GraphError(f"as_strided{tuple(size)}, stride {tuple(stride)}, offset {off} reads outside {x}")
    return [TensorType(x.dtype, tuple(size))]


def _as_strided_interp(n: Node, args: list[Any], bind: Any, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    flat = np.ascontiguousarray(args[0]).reshape(-1)
    a = n.attrs
    off = evaluate_dim(a["offset"], bind)
    strides = [evaluate_dim(s, bind) * flat.itemsize for s in a["stride"]]
    return [np.lib.stride_tricks.as_strided(flat[off:], shapes[0], strides).copy()]


def _emit_as_strided(em: Any, n: Node) -> None:
    x, out, a = n.inputs[0], n.outputs[0], n.attrs
    shape = em.t(out).shape
    em.copy_loop(shape, out, contiguous_strides(shape), "0", x, list(a["stride"]), c_dim(a["offset"]))


register(
    OpDef("slice_scatter", "movement", _slice_scatter_infer, _slice_scatter_interp, _emit_slice_scatter, _out_numel),
    OpDef("scatter", "index", _scatter_infer, _scatter_interp, _emit_scatter, _out_numel),
    OpDef("index_put", "index", _index_put_infer, _index_put_interp, _emit_index_put, _out_numel),
    OpDef("as_strided", "movement", _as_strided_infer, _as_strided_interp, _emit_as_strided, _out_numel),
)
