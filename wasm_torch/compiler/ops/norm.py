"""Softmax, log-softmax and layer norm: one vectorised kernel call each (kernels/wt_norm.h)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..codegen.ctable import literal
from ..codegen.dims import c_dim
from ..ir.graph import Dim, Node, numel
from ..ir.op import OpDef, register, same

# Work per element, counted the same on every host (exp and divide as one each): the manifest's
# work units only need to be deterministic and roughly proportional to time.
SOFTMAX_FLOPS_PER_ELEMENT = 5
LAYER_NORM_FLOPS_PER_ELEMENT = 8


def softmax_reference(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(x - m)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


def _softmax_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    x, axis = args[0], n.attrs["axis"]
    if n.op == "log_softmax":
        return [np.log(softmax_reference(x.astype(np.float64), axis)).astype(x.dtype)]
    return [softmax_reference(x, axis)]


def _outer_n_inner(shape: tuple[Dim, ...], axis: int) -> tuple[str, str, str]:
    return c_dim(numel(list(shape[:axis]))), c_dim(shape[axis]), c_dim(numel(list(shape[axis + 1 :])))


def _emit_softmax(em: Any, n: Node) -> None:
    x, out = n.inputs[0], n.outputs[0]
    o, m, i = _outer_n_inner(em.t(x).shape, n.attrs["axis"])
    em.w.line(f"wt_softmax_f32({em.var(out)}, {em.var(x)}, {o}, {m}, {i}, {int(n.op == 'log_softmax')});")


def _layer_norm_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    x, a = args[0], n.attrs
    axes = tuple(range(x.ndim - a["n_axes"], x.ndim))
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=axes, keepdims=True)
    var = x64.var(axis=axes, keepdims=True)
    y = (x64 - mu) / np.sqrt(var + a["eps"])
    if len(args) > 1 and args[1] is not None:
        y = y * args[1]
    if len(args) > 2 and args[2] is not None:
        y = y + args[2]
    return [y.astype(x.dtype)]


def _emit_layer_norm(em: Any, n: Node) -> None:
    x, out = n.inputs[0], n.outputs[0]
    shape = em.t(x).shape
    k = n.attrs["n_axes"]
    outer, inner = c_dim(numel(list(shape[:-k]))), c_dim(numel(list(shape[-k:])))
    wv, bv = (*n.inputs, "", "")[1:3]
    em.w.line(
        f"wt_layer_norm_f32({em.var(out)}, {em.var(x)}, {em.opt(wv)}, {em.opt(bv)}, "
        f"{outer}, {inner}, {literal(n.attrs['eps'], 'f32')});"
    )


def _per_element(k: int) -> Any:
    return lambda n, ins, outs: k * numel(ins[0].shape)


register(
    OpDef("softmax", "kernel", same, _softmax_interp, _emit_softmax, _per_element(SOFTMAX_FLOPS_PER_ELEMENT)),
    OpDef("log_softmax", "kernel", same, _softmax_interp, _emit_softmax, _per_element(SOFTMAX_FLOPS_PER_ELEMENT)),
    OpDef(
        "layer_norm",
        "kernel",
        same,
        _layer_norm_interp,
        _emit_layer_norm,
        _per_element(LAYER_NORM_FLOPS_PER_ELEMENT),
    ),
)
