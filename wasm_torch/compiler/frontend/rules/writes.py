"""Writes into a copy and reorderings: slice_scatter / select_scatter / copy (what `x[a:b] = v`
becomes), index_put (`x[i] = v`), scatter / scatter_add / scatter_reduce, as_strided, flip, repeat,
sort / argsort (IR ops in ops/scatter.py, ops/reduce.py)."""

from __future__ import annotations

from typing import Any

import torch

from ....errors import UnsupportedOpError
from ...ir.graph import numel
from ..aten import _args, rule
from ..context import Lowering


@rule("copy.default", "copy_.default")
def _copy(L: Lowering, fx: torch.fx.Node) -> str:
    """copy(dst, src): src broadcast to dst's shape, in dst's dtype (the functional form of dst.copy_(src))."""
    dst, src = L.value(fx.args[0]), L.value(fx.args[1])
    dt, st = L.type_of(dst), L.type_of(src)
    y = L.cast(src, dt.dtype)
    if st.shape == dt.shape:
        return L.emit("copy", [y])
    if st.rank < dt.rank:
        y = L.emit("reshape", [y], {"shape": (1,) * (dt.rank - st.rank) + st.shape})
    return L.emit("expand", [y], {"shape": dt.shape})


def _norm_bound(v: Any, size: Any, default: Any) -> Any:
    if v is None:
        return default
    if isinstance(v, int):
        if v < 0:
            v = v + size
        if isinstance(size, int):
            v = min(max(v, 0), size)
    return v


@rule("slice_scatter.default")
def _slice_scatter(L: Lowering, fx: torch.fx.Node) -> str:
    args = _args(fx, None, 0, None, None, 1)
    x, src = L.value(args[0]), L.value(args[1])
    t = L.type_of(x)
    axis = args[2] % t.rank
    size = t.shape[axis]
    start = _norm_bound(L.dim(args[3]) if args[3] is not None else None, size, 0)
    step = int(args[5])
    if step < 1:
        raise UnsupportedOpError(f"slice_scatter with step {step}")
    src = L.cast(src, t.dtype)
    if L.type_of(src).shape == t.shape and start == 0 and step == 1:
        return L.emit("copy", [src])
    return L.emit("slice_scatter", [x, src], {"axis": axis, "start": start, "step": step})


@rule("select_scatter.default")
def _select_scatter(L: Lowering, fx: torch.fx.Node) -> str:
    x, src = L.value(fx.args[0]), L.value(fx.args[1])
    t = L.type_of(x)
    axis = fx.args[2] % t.rank
    i = L.dim(fx.args[3])
    if isinstance(i, int) and i < 0:
        i = i + t.shape[axis]
    st = L.type_of(src)
    src = L.emit("reshape", [L.cast(src, t.dtype)], {"shape": (*st.shape[:axis], 1, *st.shape[axis:])})
    return L.emit("slice_scatter", [x, src], {"axis": axis, "start": i, "step": 1})


@rule("index_put.default", "index_put_.default")
def _index_put(L: Lowering, fx: torch.fx.Node) -> str:
    args = _args(fx, None, None, False)
    x, idx, v, acc = L.value(args[0]), list(args[1]), L.value(args[2]), bool(args[3])
    t = L.type_of(x)
    v = L.cast(v, t.dtype)
    if any(i is None for i in idx):
        raise UnsupportedOpError("index_put with `:` before an index tensor (x[:, i] = v); index the leading axes")
    names = [L.value(i) for i in idx]
    if len(names) == 1 and L.type_of(names[0]).dtype == "bool":  # x[mask] = v
        m = L.type_of(names[0])
        if acc or numel(L.type_of(v).shape) != 1:
            raise UnsupportedOpError(
                "boolean-mask assignment of a tensor (x[mask] = values): the number of selected elements "
                "depends on the data; use torch.where(mask, values_broadcast, x)"
            )
        mask = names[0]
        if m.rank < t.rank:
            mask = L.emit("reshape", [mask], {"shape": (*m.shape, *(1,) * (t.rank - m.rank))})
        return L.emit("where", [mask, L.emit("reshape", [v], {"shape": ()}), x])
    if any(L.type_of(n).dtype == "bool" for n in names):
        raise UnsupportedOpError("index_put with several boolean masks (data-dependent); use torch.where")
    names = [L.cast(n, "i64") for n in names]
    return L.emit("index_put", [x, v, *names], {"accumulate": acc})


def _scatter_op(L: Lowering, x: str, axis: int, idx: str, src: str, reduce: str) -> str:
    t = L.type_of(x)
    return L.emit("scatter", [x, L.cast(idx, "i64"), L.cast(src, t.dtype)], {"axis": axis % max(t.rank, 1), "reduce": reduce})


@rule("scatter.src", "scatter.reduce", "scatter.value_reduce")
def _scatter_src(L: Lowering, fx: torch.fx.Node) -> str:
    x, axis, idx, src = fx.args[:4]
    red = fx.kwargs.get("reduce", fx.args[4] if len(fx.args) > 4 else None)
    reduce = {None: "none", "add": "add", "multiply": "mul"}.get(red)
    if reduce is None:
        raise UnsupportedOpError(f"scatter with reduce={red!r}")
    xv = L.value(x)
    s = L.value(src) if L.is_tensor(src) else L.operand(src, L.type_of(xv).dtype)
    return _scatter_op(L, xv, axis, L.value(idx), s, reduce)


@rule("scatter_add.default")
def _scatter_add(L: Lowering, fx: torch.fx.Node) -> str:
    x, axis, idx, src = fx.args[:4]
    return _scatter_op(L, L.value(x), axis, L.value(idx), L.value(src), "add")


_IDENTITY = {"sum": 0.0, "prod": 1.0, "amax": float("-inf"), "amin": float("inf")}


@rule("scatter_reduce.two")
def _scatter_reduce(L: Lowering, fx: torch.fx.Node) -> str:
    args = _args(fx, None, None, None, None, True)
    x, axis, idx, src, red, include_self = L.value(args[0]), args[1], L.value(args[2]), L.value(args[3]), args[4], args[5]
    if red not in _IDENTITY:
        raise UnsupportedOpError(f"scatter_reduce with reduce={red!r} (sum, prod, amax, amin are supported)")
    t = L.type_of(x)
    if not include_self:  # the written positions start from the reduction's identity
        value = _IDENTITY[red]
        if t.dtype != "f32" and red in ("amax", "amin"):
            raise UnsupportedOpError("scatter_reduce amax/amin with include_self=False on integers")
        value = value if t.dtype == "f32" else int(value)
        x = L.emit("scatter_value", [x, L.cast(idx, "i64")], {"axis": axis % t.rank, "value": value})
    return _scatter_op(L, x, axis, idx, src, {"sum": "add", "prod": "mul"}.get(red, red))


@rule("as_strided.default", "as_strided_copy.default")
def _as_strided(L: Lowering, fx: torch.fx.Node) -> str:
    """as_strided on a contiguous tensor: a strided read of its buffer (ConvNeXt's head emits one)."""
    src = fx.args[0]
    val = src.meta.get("val") if isinstance(src, torch.fx.Node) else None
    if val is None or not val.is_contiguous() or val.storage_offset() != 0:
        raise UnsupportedOpError("as_strided of a non-contiguous view (apply it to a contiguous tensor)")
    x = L.value(src)
    size = tuple(L.dim(s) for s in fx.args[1])
    stride = tuple(L.dim(s) for s in fx.args[2])
    offset = L.dim(fx.args[3]) if len(fx.args) > 3 and fx.args[3] is not None else 0
    return L.emit("as_strided", [x], {"size": size, "stride": stride, "offset": offset})


@rule("flip.default")
def _flip(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    t = L.type_of(x)
    cs = [numel(list(t.shape[i + 1 :])) for i in range(t.rank)]  # contiguous element strides
    dims = {d % t.rank for d in fx.args[1]}
    stride = tuple(-s if i in dims else s for i, s in enumerate(cs))
    offset = sum(((t.shape[i] - 1) * cs[i] for i in dims), 0)
    return L.emit("as_strided", [x], {"size": t.shape, "stride": stride, "offset": offset})


@rule("repeat.default")
def _repeat(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    reps = [L.dim(r) for r in fx.args[1]]
    t = L.type_of(x)
    shape = (1,) * (len(reps) - t.rank) + t.shape
    inter = tuple(d for pair in zip([1] * len(shape), shape, strict=True) for d in pair)
    big = tuple(d for r, s in zip(reps, shape, strict=True) for d in (r, s))
    y = L.emit("reshape", [x], {"shape": inter})
    if big != inter:
        y = L.emit("expand", [y], {"shape": big})
    return L.emit("reshape", [y], {"shape": tuple(r * s for r, s in zip(reps, shape, strict=True))})


@rule("sort.default", "sort.stable")
def _sort(L: Lowering, fx: torch.fx.Node) -> list[str]:
    x = L.value(fx.args[0])
    t = L.type_of(x)
    if str(fx.target).endswith("stable"):
        axis, desc = fx.kwargs.get("dim", -1), fx.kwargs.get("descending", False)
    else:
        args = _args(fx, -1, False)
        axis, desc = args[1], args[2]
    axis = axis % max(t.rank, 1)
    k = t.shape[axis]
    if not isinstance(k, int):
        raise UnsupportedOpError("sort over a dynamic dimension")
    return L.emit("topk", [x], {"k": k, "axis": axis, "largest": bool(desc)}, n_out=2)

