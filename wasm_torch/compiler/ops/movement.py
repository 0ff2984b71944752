"""Data movement: permute, expand, reshape (an alias: no code), slice, cat, pad — strided copy loops."""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from ..codegen.ctable import literal
from ..codegen.dims import c_dim
from ..codegen.loops import broadcast_strides, contiguous_strides
from ..ir.graph import Dim, Node, TensorType, dim, evaluate_dim, evaluate_shape, numel
from ..ir.op import OpDef, register


def _out_numel(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    """Data movement moves one element per output element; the work unit counts it as one."""
    return numel(outs[0].shape)


def _shape_attr(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [TensorType(t[0].dtype, tuple(n.attrs["shape"]))]


# ---- permute -------------------------------------------------------------------------------------
def _permute_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [TensorType(t[0].dtype, tuple(t[0].shape[p] for p in n.attrs["perm"]))]


def _emit_permute(em: Any, n: Node) -> None:
    x, out = n.inputs[0], n.outputs[0]
    xs = contiguous_strides(em.t(x).shape)
    shape = em.t(out).shape
    em.copy_loop(shape, out, contiguous_strides(shape), "0", x, [xs[p] for p in n.attrs["perm"]], "0")


# ---- expand / reshape ----------------------------------------------------------------------------
def _reshape_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    shape = evaluate_shape(n.attrs["shape"], bind)
    if n.op == "expand":
        return [np.broadcast_to(args[0], shape).copy()]
    return [args[0].reshape(shape)]


def _emit_expand(em: Any, n: Node) -> None:
    x, out = n.inputs[0], n.outputs[0]
    shape = em.t(out).shape
    em.copy_loop(shape, out, contiguous_strides(shape), "0", x, broadcast_strides(em.t(x).shape, shape), "0")


# ---- slice ---------------------------------------------------------------------------------------
def _slice_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    a = n.attrs["axis"]
    length = dim(n.attrs["end"] - n.attrs["start"])
    step = n.attrs["step"]
    size = dim((length + step - 1) // step) if isinstance(length, int) else dim(sympy.ceiling(length / step))
    return [TensorType(x.dtype, (*x.shape[:a], size, *x.shape[a + 1 :]))]


def _slice_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    x, a = args[0], n.attrs
    s = [slice(None)] * x.ndim
    s[a["axis"]] = slice(evaluate_dim(a["start"], bind), evaluate_dim(a["end"], bind), a["step"])
    return [x[tuple(s)].copy()]


def _emit_slice(em: Any, n: Node) -> None:
    x, out = n.inputs[0], n.outputs[0]
    a = n.attrs
    xs = contiguous_strides(em.t(x).shape)
    src = list(xs)
    src[a["axis"]] = xs[a["axis"]] * a["step"]
    shape = em.t(out).shape
    em.copy_loop(shape, out, contiguous_strides(shape), "0", x, src, c_dim(a["start"] * xs[a["axis"]]))


# ---- cat -----------------------------------------------------------------------------------------
def _cat_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    a = n.attrs["axis"]
    total = dim(sum((x.shape[a] for x in t), sympy.Integer(0)))
    return [TensorType(t[0].dtype, (*t[0].shape[:a], total, *t[0].shape[a + 1 :]))]


def _emit_cat(em: Any, n: Node) -> None:
    out, axis = n.outputs[0], n.attrs["axis"]
    os = contiguous_strides(em.t(out).shape)
    start: Dim = 0
    for x in n.inputs:
        xt = em.t(x)
        em.copy_loop(xt.shape, out, os, c_dim(sympy.expand(start * os[axis])), x, contiguous_strides(xt.shape), "0")
        start = start + xt.shape[axis]


# ---- pad -----------------------------------------------------------------------------------------
def _pad_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    pads = n.attrs["pads"]  # [(before, after)] per axis, full rank
    return [TensorType(x.dtype, tuple(dim(d + b + a) for d, (b, a) in zip(x.shape, pads, strict=True)))]


def _emit_pad(em: Any, n: Node) -> None:
    x, out = n.inputs[0], n.outputs[0]
    ot, xt = em.t(out), em.t(x)
    os = contiguous_strides(ot.shape)
    fill = literal(n.attrs.get("value", 0), ot.dtype)
    em.loops(ot.shape, [os], ["0"], lambda o: em.w.line(f"{em.var(out)}[{o[0]}] = {fill};"))
    base = sum((b * s for (b, _), s in zip(n.attrs["pads"], os, strict=True)), sympy.Integer(0))
    em.copy_loop(xt.shape, out, os, c_dim(sympy.expand(base)), x, contiguous_strides(xt.shape), "0")


register(
    OpDef(
        "permute",
        "movement",
        _permute_infer,
        lambda n, a, b, s: [np.transpose(a[0], n.attrs["perm"]).copy()],
        _emit_permute,
        _out_numel,
    ),
    OpDef("expand", "movement", _shape_attr, _reshape_interp, _emit_expand, _out_numel),
    OpDef("reshape", "alias", _shape_attr, _reshape_interp, None, lambda n, i, o: 0),
    OpDef("slice", "movement", _slice_infer, _slice_interp, _emit_slice, _out_numel),
    OpDef(
        "cat",
        "movement",
        _cat_infer,
        lambda n, a, b, s: [np.concatenate(a, axis=n.attrs["axis"])],
        _emit_cat,
        _out_numel,
    ),
    OpDef(
        "pad",
        "movement",
        _pad_infer,
        lambda n, a, b, s: [np.pad(a[0], n.attrs["pads"], constant_values=n.attrs.get("value", 0))],
        _emit_pad,
        _out_numel,
    ),
)
