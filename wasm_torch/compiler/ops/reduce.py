"""Reductions over axes, argmax, top-k and cumulative sums: loops rendered from a small table."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..codegen.ctable import CTYPE
from ..codegen.dims import c_dim
from ..codegen.loops import contiguous_strides
from ..ir.graph import Node, TensorType, numel
from ..ir.op import OpDef, norm_axis, register, same

REDUCE_FN = {
    "reduce_sum": np.sum,
    "reduce_mean": np.mean,
    "reduce_max": np.max,
    "reduce_min": np.min,
    "reduce_any": np.any,
    "reduce_all": np.all,
    "reduce_prod": np.prod,
}


def _reduce_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    axes = {norm_axis(a, x.rank) for a in n.attrs["axes"]}
    keep = n.attrs.get("keepdim", False)
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
    dtype = "bool" if n.op in ("reduce_any", "reduce_all") else x.dtype
    return [TensorType(dtype, shape)]


def _reduce_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    x, a = args[0], n.attrs
    axes = tuple(norm_axis(i, x.ndim) for i in a["axes"])
    r = REDUCE_FN[n.op](x, axis=axes, keepdims=a.get("keepdim", False))
    return [np.asarray(r).astype(x.dtype if n.op not in ("reduce_any", "reduce_all") else bool)]


def _argmax_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    a = norm_axis(n.attrs["axis"], x.rank)
    keep = n.attrs.get("keepdim", False)
    shape = tuple(1 if i == a else d for i, d in enumerate(x.shape) if keep or i != a)
    return [TensorType("i64", shape)]


def _argmax_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    a = n.attrs
    return [np.asarray(np.argmax(args[0], axis=a["axis"], keepdims=a.get("keepdim", False))).astype(np.int64)]


def _emit_reduce(em: Any, n: Node) -> None:
    x, out, a = n.inputs[0], n.outputs[0], n.attrs
    xt = em.t(x)
    axes = sorted({ax % max(xt.rank, 1) for ax in (a["axes"] if n.op != "argmax" else (a["axis"],))})
    kept = [j for j in range(xt.rank) if j not in axes]
    xs = contiguous_strides(xt.shape)
    kshape = tuple(xt.shape[j] for j in kept)
    ct = CTYPE[xt.dtype]
    is_f = xt.dtype == "f32"
    lo = "(-__builtin_inff())" if is_f else "INT64_MIN"
    hi = "__builtin_inff()" if is_f else "INT64_MAX"
    init, step = {
        "reduce_sum": ("0", "acc += {v};"),
        "reduce_mean": ("0", "acc += {v};"),
        "reduce_prod": ("1", "acc *= {v};"),
        "reduce_max": (lo, "if ({v} > acc || {v} != {v}) acc = {v};"),
        "reduce_min": (hi, "if ({v} < acc || {v} != {v}) acc = {v};"),
        "reduce_any": ("0", "acc = acc || {v};"),
        "reduce_all": ("1", "acc = acc && {v};"),
        "argmax": (lo, "if ({v} > acc) {{ acc = {v}; best = {i}; }}"),
    }[n.op]
    acc_t = "uint8_t" if n.op in ("reduce_any", "reduce_all") else ct
    count = c_dim(numel([xt.shape[j] for j in axes]))
    rshape = tuple(xt.shape[j] for j in axes)

    def outer(o: list[str]) -> None:
        em.w.line("{")
        em.w.depth += 1
        em.w.line(f"{acc_t} acc = {init};")
        if n.op == "argmax":
            em.w.line("int64_t best = 0;")
            em.w.line("int64_t pos = 0;")

        def inner(i: list[str]) -> None:
            v = f"{em.var(x)}[{i[0]}]"
            em.w.line(step.format(v=v, i="pos"))
            if n.op == "argmax":
                em.w.line("pos++;")

        em.loops(rshape, [[xs[j] for j in axes]], [o[1]], inner)
        res = {"reduce_mean": f"acc / ({ct})({count})", "argmax": "best"}.get(n.op, "acc")
        em.w.line(f"{em.var(out)}[{o[0]}] = {res};")
        em.w.depth -= 1
        em.w.line("}")

    em.loops(kshape, [contiguous_strides(kshape), [xs[j] for j in kept]], ["0", "0"], outer)


def _in_numel(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    return numel(ins[0].shape)


for _op in REDUCE_FN:
    register(OpDef(_op, "reduce", _reduce_infer, _reduce_interp, _emit_reduce, _in_numel))
register(OpDef("argmax", "reduce", _argmax_infer, _argmax_interp, _emit_reduce, _in_numel))


# ---- top-k ---------------------------------------------------------------------------------------
def _topk_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    shape = tuple(n.attrs["k"] if i == n.attrs["axis"] else d for i, d in enumerate(x.shape))
    return [TensorType(x.dtype, shape), TensorType("i64", shape)]


def _topk_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    """Sorted; ties keep the lower index first (stable)."""
    x, a = args[0], n.attrs
    key = -x if a["largest"] else x
    idx = np.take(np.argsort(key, axis=a["axis"], kind="stable"), np.arange(a["k"]), axis=a["axis"])
    return [np.take_along_axis(x, idx, a["axis"]), idx.astype(np.int64)]


def _emit_topk(em: Any, n: Node) -> None:
    """Per row, insertion into the sorted output row: O(n·k), no scratch memory; ties keep the
    lower index first, like the interpreter's stable sort."""
    x, (vals, idxs) = n.inputs[0], n.outputs
    xt, a = em.t(x), n.attrs
    axis, k = a["axis"], a["k"]
    xs = contiguous_strides(xt.shape)
    os_ = contiguous_strides(em.t(vals).shape)
    shape = tuple(1 if j == axis else d for j, d in enumerate(xt.shape))
    better = ">" if a["largest"] else "<"
    ct = CTYPE[xt.dtype]
    v, ix, xv = em.var(vals), em.var(idxs), em.var(x)
    xst, ost = c_dim(xs[axis]), c_dim(os_[axis])

    def body(o: list[str]) -> None:
        w = em.w
        at = lambda p: f"[{o[1]} + ({p}) * {ost}]"  # noqa: E731
        w.line("{")
        w.depth += 1
        w.line("int cnt = 0;")
        with w.block(f"for (int i = 0; i < {c_dim(xt.shape[axis])}; i++)"):
            w.line(f"{ct} val = {xv}[{o[0]} + i * {xst}];")
            w.line(f"if (cnt == {k} && !(val {better} {v}{at(k - 1)})) continue;")
            w.line(f"int p = cnt < {k} ? cnt++ : {k} - 1;")
            with w.block(f"while (p > 0 && val {better} {v}{at('p - 1')})"):
                w.line(f"{v}{at('p')} = {v}{at('p - 1')};")
                w.line(f"{ix}{at('p')} = {ix}{at('p - 1')};")
                w.line("p--;")
            w.line(f"{v}{at('p')} = val;")
            w.line(f"{ix}{at('p')} = i;")
        w.depth -= 1
        w.line("}")

    em.loops(shape, [xs, os_], ["0", "0"], body)


def _topk_flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    return numel(ins[0].shape) * n.attrs["k"]


register(OpDef("topk", "reduce", _topk_infer, _topk_interp, _emit_topk, _topk_flops))


# ---- cumulative sum ------------------------------------------------------------------------------
def _cumsum_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    return [np.cumsum(args[0], axis=n.attrs["axis"]).astype(args[0].dtype)]


def _emit_cumsum(em: Any, n: Node) -> None:
    x, out, axis = n.inputs[0], n.outputs[0], n.attrs["axis"]
    xt = em.t(x)
    xs = contiguous_strides(xt.shape)
    shape = tuple(1 if j == axis else d for j, d in enumerate(xt.shape))
    ct = CTYPE[xt.dtype]

    def body(o: list[str]) -> None:
        with em.w.block(f"{{ {ct} acc = 0; for (int k = 0; k < {c_dim(xt.shape[axis])}; k++)"):
            em.w.line(f"acc += {em.var(x)}[{o[0]} + k * {c_dim(xs[axis])}];")
            em.w.line(f"{em.var(out)}[{o[0]} + k * {c_dim(xs[axis])}] = acc;")
        em.w.line("}")

    em.loops(shape, [xs], ["0"], body)


register(OpDef("cumsum", "reduce", same, _cumsum_interp, _emit_cumsum, _in_numel))
