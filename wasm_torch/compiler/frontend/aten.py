"""One table: core ATen op -> IR lowering. Adding support for an op = one function + one line.

Each lowering gets the `Lowering` context and the fx node and returns what the fx node stands
for: an IR value name, a list of them (multi-output ops), or None for outputs we never compute
(e.g. batch-norm's saved statistics — using one raises a clear error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy
import torch

from ...errors import UnsupportedOpError
from ..ir.graph import numel
from .context import Lowering

Lower = Callable[[Lowering, torch.fx.Node], Any]
TABLE: dict[str, Lower] = {}


def rule(*names: str) -> Callable[[Lower], Lower]:
    def deco(fn: Lower) -> Lower:
        for n in names:
            TABLE[f"aten.{n}"] = fn
        return fn

    return deco


def _args(fx: torch.fx.Node, *defaults: Any) -> list[Any]:
    """Positional args with kwargs merged in schema order; defaults fill positions 1, 2, ..."""
    schema = getattr(fx.target, "_schema", None)
    args = list(fx.args)
    names = [a.name for a in schema.arguments] if schema is not None else []
    for i in range(len(args), len(defaults) + 1):
        if i < len(names) and names[i] in fx.kwargs:
            args.append(fx.kwargs[names[i]])
        else:
            args.append(defaults[i - 1])
    return args


# ---- elementwise ------------------------------------------------------------------------------
def _binary(op: str, compare: bool = False) -> Lower:
    def lower(L: Lowering, fx: torch.fx.Node) -> str:
        a, b = fx.args[0], fx.args[1]
        if (
            fx.target in (torch.ops.aten.add.Tensor, torch.ops.aten.sub.Tensor)
            and fx.kwargs.get("alpha", 1) != 1
        ):
            raise UnsupportedOpError(f"{fx.target} with alpha != 1")
        dt = L.common_dtype(a, b) if compare else L.out_dtype(fx)
        return L.emit(op, [L.operand(a, dt), L.operand(b, dt)])

    return lower


for _op, _names in {
    "add": ("add.Tensor", "add.Scalar"),
    "sub": ("sub.Tensor", "sub.Scalar"),
    "mul": ("mul.Tensor", "mul.Scalar"),
    "div": ("div.Tensor", "div.Scalar"),
    "maximum": ("maximum.default",),
    "minimum": ("minimum.default",),
    "remainder": ("remainder.Tensor", "remainder.Scalar"),
    "pow": ("pow.Tensor_Scalar", "pow.Tensor_Tensor"),
}.items():
    rule(*_names)(_binary(_op))
for _op in ("eq", "ne", "lt", "le", "gt", "ge"):
    rule(f"{_op}.Tensor", f"{_op}.Scalar")(_binary(_op, compare=True))
rule("logical_and.default")(_binary("logical_and", compare=True))
rule("logical_or.default")(_binary("logical_or", compare=True))
rule("logical_xor.default")(_binary("logical_xor", compare=True))


@rule("bitwise_and.Tensor", "bitwise_and.Scalar", "bitwise_or.Tensor", "bitwise_xor.Tensor")
def _bitwise(L: Lowering, fx: torch.fx.Node) -> str:
    dt = L.out_dtype(fx)
    kind = str(fx.target).split(".")[1].split("_")[1]  # and | or | xor
    if dt != "bool" and kind != "and":
        raise UnsupportedOpError(f"{fx.target} on {dt} tensors")
    op = f"logical_{kind}" if dt == "bool" else "bitand"
    return L.emit(op, [L.operand(fx.args[0], dt), L.operand(fx.args[1], dt)])


@rule("div.Tensor_mode", "div.Scalar_mode")
def _div_mode(L: Lowering, fx: torch.fx.Node) -> str:
    mode = fx.kwargs.get("rounding_mode")
    dt = L.out_dtype(fx)
    a, b = L.operand(fx.args[0], dt), L.operand(fx.args[1], dt)
    if mode == "floor":
        return L.emit("floordiv", [a, b])
    if mode is None:
        return L.emit("div", [a, b])
    if dt == "f32":  # trunc: sign(q) * floor(|q|)
        q = L.emit("div", [a, b])
        return L.emit(
            "where", [L.emit("lt", [q, L.operand(0.0, dt)]), L.emit("ceil", [q]), L.emit("floor", [q])]
        )
    raise UnsupportedOpError(f"{fx.target} with rounding_mode={mode!r} on integers")


def _unary(op: str, **attrs: Any) -> Lower:
    def lower(L: Lowering, fx: torch.fx.Node) -> str:
        dt = L.out_dtype(fx)
        return L.emit(
            op, [L.operand(fx.args[0], dt if op != "logical_not" else L.scalar_dtype(fx.args[0]))], attrs
        )

    return lower


_UNARY_ATEN = (
    "neg abs relu sigmoid tanh exp log log1p sqrt rsqrt erf sin cos reciprocal floor ceil logical_not"
)
for _op in _UNARY_ATEN.split():
    rule(f"{_op}.default")(_unary(_op))
rule("silu.default")(_unary("silu"))
rule("hardsigmoid.default")(_unary("hardsigmoid"))
rule("hardswish.default")(_unary("hardswish"))
rule("bitwise_not.default")(_unary("logical_not"))


@rule("gelu.default")
def _gelu(L: Lowering, fx: torch.fx.Node) -> str:
    approx = fx.kwargs.get("approximate", fx.args[1] if len(fx.args) > 1 else "none")
    return L.emit("gelu_tanh" if approx == "tanh" else "gelu", [L.value(fx.args[0])])


@rule("leaky_relu.default")
def _leaky(L: Lowering, fx: torch.fx.Node) -> str:
    slope = _args(fx, 0.01)[1]
    return L.emit("leaky_relu", [L.value(fx.args[0])], {"slope": float(slope)})


@rule("clamp.default", "hardtanh.default", "clamp_min.default", "clamp_max.default")
def _clamp(L: Lowering, fx: torch.fx.Node) -> str:
    target = str(fx.target)
    args = _args(fx, None, None) if "hardtanh" not in target else _args(fx, -1.0, 1.0)
    lo, hi = args[1], args[2] if len(args) > 2 else None
    if "clamp_max" in target:
        lo, hi = None, args[1]
    dt = L.out_dtype(fx)
    cast = float if dt == "f32" else int
    return L.emit(
        "clamp",
        [L.operand(fx.args[0], dt)],
        {"min": None if lo is None else cast(lo), "max": None if hi is None else cast(hi)},
    )


@rule("where.self", "where.ScalarOther", "where.ScalarSelf", "where.Scalar")
def _where(L: Lowering, fx: torch.fx.Node) -> str:
    c, a, b = fx.args
    dt = L.out_dtype(fx)
    return L.emit("where", [L.cast(L.value(c), "bool"), L.operand(a, dt), L.operand(b, dt)])


@rule(
    "_to_copy.default",
    "clone.default",
    "alias.default",
    "lift_fresh_copy.default",
    "detach.default",
    "contiguous.default",
)
def _copy(L: Lowering, fx: torch.fx.Node) -> str:
    # Values are immutable in the IR, so a copy is the same value (cast when the dtype changes).
    return L.cast(L.value(fx.args[0]), L.out_dtype(fx))


# ---- creation ---------------------------------------------------------------------------------
@rule("scalar_tensor.default")
def _scalar_tensor(L: Lowering, fx: torch.fx.Node) -> str:
    return L.operand(fx.args[0], L.out_dtype(fx))


@rule(
    "full.default",
    "zeros.default",
    "ones.default",
    "full_like.default",
    "zeros_like.default",
    "ones_like.default",
    "new_zeros.default",
    "new_ones.default",
    "new_full.default",
    "empty.memory_format",
    "empty_like.default",
)
def _full(L: Lowering, fx: torch.fx.Node) -> str:
    t = str(fx.target)
    value: Any = 0
    if "ones" in t:
        value = 1
    elif t.endswith("full.default") or t.endswith("full_like.default"):
        value = fx.args[-1] if "new_full" not in t else fx.args[2]
        value = fx.args[1] if t.endswith("full.default") and "new" not in t else value
    dt = L.out_dtype(fx)
    if isinstance(value, torch.fx.Node):
        value = L.dim(value)
    value = bool(value) if dt == "bool" else (float(value) if dt == "f32" else value)
    return L.emit("full", [], {"shape": L.shape_of(fx), "value": value, "dtype": dt})


@rule("arange.start_step", "arange.default", "arange.start")
def _arange(L: Lowering, fx: torch.fx.Node) -> str:
    args = list(fx.args)
    if fx.target == torch.ops.aten.arange.default:
        args = [0, args[0]]
    start, end = L.dim(args[0]), L.dim(args[1])
    step = args[2] if len(args) > 2 else 1
    if not isinstance(step, int):
        raise UnsupportedOpError("arange with a non-integer step")
    return L.emit("arange", [], {"start": start, "end": end, "step": step, "dtype": L.out_dtype(fx)})


# ---- movement ---------------------------------------------------------------------------------
@rule(
    "view.default",
    "_unsafe_view.default",
    "reshape.default",
    "squeeze.dims",
    "squeeze.dim",
    "squeeze.default",
    "unsqueeze.default",
    "flatten.using_ints",
    "view_copy.default",
)
def _reshape(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    shape = L.shape_of(fx)
    if L.type_of(x).shape == shape:
        return x
    return L.emit("reshape", [x], {"shape": shape})


@rule("expand.default", "expand_copy.default")
def _expand(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    shape = L.shape_of(fx)
    t = L.type_of(x)
    if t.shape == shape:
        return x
    if len(shape) > t.rank:  # expand adds leading dims: make the ranks equal first (free reshape)
        x = L.emit("reshape", [x], {"shape": (1,) * (len(shape) - t.rank) + t.shape})
    return L.emit("expand", [x], {"shape": shape})


@rule("permute.default", "permute_copy.default")
def _permute(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    rank = L.type_of(x).rank
    perm = [p % rank for p in fx.args[1]]
    return x if perm == sorted(perm) else L.emit("permute", [x], {"perm": tuple(perm)})


@rule("t.default", "transpose.int")
def _transpose(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    rank = L.type_of(x).rank
    a, b = (fx.args[1] % rank, fx.args[2] % rank) if len(fx.args) > 2 else (0, 1)
    if rank < 2 or a == b:
        return x
    perm = list(range(rank))
    perm[a], perm[b] = perm[b], perm[a]
    return L.emit("permute", [x], {"perm": tuple(perm)})


def _slice_value(L: Lowering, x: str, axis: int, start: Any, end: Any, step: int) -> str:
    size = L.type_of(x).shape[axis]
    start = 0 if start is None else L.dim(start)
    end = size if end is None else L.dim(end)

    def clamp(v: Any) -> Any:
        if isinstance(v, int) and v < 0:
            v = v + size
            if isinstance(v, int):
                v = max(v, 0)
        if isinstance(v, int) and isinstance(size, int):
            return min(v, size)
        if isinstance(v, int) and v >= 2**31:  # "to the end" on a symbolic dim
            return size
        return v

    start, end = clamp(start), clamp(end)
    if start == 0 and step == 1 and (end == size or (isinstance(end, sympy.Expr) and end.equals(size))):
        return x
    return L.emit("slice", [x], {"axis": axis, "start": start, "end": end, "step": step})


@rule("slice.Tensor", "slice_copy.Tensor")
def _slice(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    args = _args(fx, 0, None, None, 1)
    axis = args[1] % L.type_of(x).rank
    return _slice_value(L, x, axis, args[2], args[3], args[4])


@rule("select.int", "select_copy.int")
def _select(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    axis = fx.args[1] % L.type_of(x).rank
    i = L.dim(fx.args[2])
    if isinstance(i, int) and i < 0:
        i = i + L.type_of(x).shape[axis]
    s = _slice_value(L, x, axis, i, i + 1, 1)
    return L.emit("reshape", [s], {"shape": L.shape_of(fx)})


@rule("split_with_sizes.default", "split.Tensor", "split_with_sizes_copy.default", "split_copy.Tensor")
def _split(L: Lowering, fx: torch.fx.Node) -> list[str]:
    x = L.value(fx.args[0])
    axis = (fx.args[2] if len(fx.args) > 2 else fx.kwargs.get("dim", 0)) % L.type_of(x).rank
    sizes = [L.dim(v.shape[axis]) for v in fx.meta["val"]]
    outs, start = [], 0
    for s in sizes:
        outs.append(_slice_value(L, x, axis, start, start + s, 1))
        start = start + s
    return outs


@rule("unbind.int")
def _unbind(L: Lowering, fx: torch.fx.Node) -> list[str]:
    x = L.value(fx.args[0])
    axis = (fx.args[1] if len(fx.args) > 1 else 0) % L.type_of(x).rank
    outs = []
    for i, v in enumerate(fx.meta["val"]):
        s = _slice_value(L, x, axis, i, i + 1, 1)
        outs.append(L.emit("reshape", [s], {"shape": tuple(L.dim(d) for d in v.shape)}))
    return outs


@rule("cat.default")
def _cat(L: Lowering, fx: torch.fx.Node) -> str:
    dt = L.out_dtype(fx)
    xs = [L.cast(L.value(a), dt) for a in fx.args[0] if L.type_of(L.value(a)).shape != (0,)]
    rank = L.type_of(xs[0]).rank
    axis = (fx.args[1] if len(fx.args) > 1 else fx.kwargs.get("dim", 0)) % rank
    return xs[0] if len(xs) == 1 else L.emit("cat", xs, {"axis": axis})


@rule("constant_pad_nd.default")
def _pad(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    flat = list(fx.args[1])
    value = fx.args[2] if len(fx.args) > 2 else 0
    rank = L.type_of(x).rank
    pads = [(0, 0)] * rank
    for i in range(len(flat) // 2):
        b, a = flat[2 * i], flat[2 * i + 1]
        if b < 0 or a < 0:
            raise UnsupportedOpError("constant_pad_nd with negative padding (cropping)")
        pads[rank - 1 - i] = (b, a)
    return L.emit("pad", [x], {"pads": tuple(pads), "value": value})


# ---- indexing ---------------------------------------------------------------------------------
@rule("embedding.default")
def _embedding(L: Lowering, fx: torch.fx.Node) -> str:
    return L.emit("index", [L.value(fx.args[0]), L.cast(L.value(fx.args[1]), "i64")])


@rule("index.Tensor")
def _index(L: Lowering, fx: torch.fx.Node) -> str:
    x, idx = L.value(fx.args[0]), list(fx.args[1])
    lead = 0
    while lead < len(idx) and idx[lead] is None:
        lead += 1
    if any(i is None for i in idx[lead:]):
        raise UnsupportedOpError("index.Tensor with None between index tensors")
    rank = L.type_of(x).rank
    if lead:  # x[:, :, i] -> move the indexed axes to the front, index, move the result back
        perm = list(range(lead, lead + len(idx) - lead)) + list(range(lead)) + list(range(len(idx), rank))
        x = L.emit("permute", [x], {"perm": tuple(perm)})
    names = [L.cast(L.value(i), "i64") if L.type_of(L.value(i)).dtype != "bool" else None for i in idx[lead:]]
    if any(n is None for n in names):
        raise UnsupportedOpError("boolean-mask indexing (data-dependent output shape)")
    y = L.emit("index", [x, *names])
    if lead:
        yr = L.type_of(y).rank
        nb = yr - (rank - lead - (len(idx) - lead)) - lead  # rank of the broadcast index block
        perm = list(range(nb, nb + lead)) + list(range(nb)) + list(range(nb + lead, yr))
        y = L.emit("permute", [y], {"perm": tuple(perm)})
    return y


@rule("index_select.default")
def _index_select(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    rank = L.type_of(x).rank
    axis = fx.args[1] % rank
    i = L.cast(L.value(fx.args[2]), "i64")
    if axis == 0:
        return L.emit("index", [x, i])
    perm = [axis, *[d for d in range(rank) if d != axis]]
    y = L.emit("index", [L.emit("permute", [x], {"perm": tuple(perm)}), i])
    inv = list(np.argsort(perm))
    return L.emit("permute", [y], {"perm": tuple(int(p) for p in inv)})


@rule("gather.default")
def _gather(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    return L.emit("gather", [x, L.cast(L.value(fx.args[2]), "i64")], {"axis": fx.args[1] % L.type_of(x).rank})


# ---- reductions -------------------------------------------------------------------------------
_WHOLE_TENSOR = {f"aten.{r}.default" for r in ("sum", "mean", "any", "all", "prod")}


def _reduce(op: str) -> Lower:
    def lower(L: Lowering, fx: torch.fx.Node) -> str:
        x = L.value(fx.args[0])
        rank = L.type_of(x).rank
        whole = str(fx.target) in _WHOLE_TENSOR  # sum.default(x, dtype) etc. reduce everything
        args = [fx.args[0], None, False] if whole else _args(fx, None, False)
        axes = args[1] if len(args) > 1 and args[1] is not None else list(range(rank))
        axes = [axes] if isinstance(axes, int) else list(axes)
        keep = (
            bool(args[2])
            if len(args) > 2 and isinstance(args[2], bool)
            else bool(fx.kwargs.get("keepdim", False))
        )
        if not axes:
            axes = list(range(rank))
        dt = L.out_dtype(fx)
        if op not in ("reduce_any", "reduce_all"):
            x = L.cast(x, dt)
        return L.emit(op, [x], {"axes": tuple(a % max(rank, 1) for a in axes), "keepdim": keep})

    return lower


rule("sum.dim_IntList", "sum.default")(_reduce("reduce_sum"))
rule("mean.dim", "mean.default")(_reduce("reduce_mean"))
rule("amax.default")(_reduce("reduce_max"))
rule("amin.default")(_reduce("reduce_min"))
rule("any.dim", "any.dims", "any.default")(_reduce("reduce_any"))
rule("all.dim", "all.dims", "all.default")(_reduce("reduce_all"))
rule("prod.dim_int", "prod.default")(_reduce("reduce_prod"))


@rule("max.dim", "min.dim")
def _max_dim(L: Lowering, fx: torch.fx.Node) -> list[str]:
    x = L.value(fx.args[0])
    axis, keep = fx.args[1], fx.args[2] if len(fx.args) > 2 else False
    op = "reduce_max" if "max" in str(fx.target) else "reduce_min"
    vals = L.emit(op, [x], {"axes": (axis,), "keepdim": keep})
    src = x if op == "reduce_max" else L.emit("neg", [x])
    return [vals, L.emit("argmax", [src], {"axis": axis, "keepdim": keep})]


@rule("argmax.default", "argmin.default")
def _argmax(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    args = _args(fx, None, False)
    if args[1] is None:
        x = L.emit("reshape", [x], {"shape": (numel(L.type_of(x).shape),)})
        args[1] = 0
    if "argmin" in str(fx.target):
        x = L.emit("neg", [x])
    return L.emit("argmax", [x], {"axis": args[1], "keepdim": bool(args[2])})


@rule("topk.default")
def _topk(L: Lowering, fx: torch.fx.Node) -> list[str]:
    args = _args(fx, None, -1, True, True)
    x = L.value(args[0])
    k, axis, largest = int(args[1]), args[2] % max(L.type_of(x).rank, 1), bool(args[3])
    return L.emit("topk", [x], {"k": k, "axis": axis, "largest": largest}, n_out=2)


@rule("scatter.value")
def _scatter_value(L: Lowering, fx: torch.fx.Node) -> str:
    x, axis, idx, value = fx.args[:4]
    xv = L.value(x)
    dt = L.type_of(xv).dtype
    value = bool(value) if dt == "bool" else (float(value) if dt == "f32" else int(value))
    attrs = {"axis": axis % max(L.type_of(xv).rank, 1), "value": value}
    return L.emit("scatter_value", [xv, L.cast(L.value(idx), "i64")], attrs)


@rule("diagonal.default", "diagonal_copy.default")
def _diagonal(L: Lowering, fx: torch.fx.Node) -> str:
    # The diagonal of the last two dims is a strided slice of their flattening: element i at i*(M+1).
    args = _args(fx, 0, 0, 1)
    x = L.value(args[0])
    t = L.type_of(x)
    offset, d1, d2 = int(args[1]), args[2] % t.rank, args[3] % t.rank
    rest = [d for d in range(t.rank) if d not in (d1, d2)]
    if [*rest, d1, d2] != list(range(t.rank)):
        x = L.emit("permute", [x], {"perm": (*rest, d1, d2)})
    n, m = L.type_of(x).shape[-2:]
    if not (isinstance(n, int) and isinstance(m, int)):
        raise UnsupportedOpError("diagonal over dynamic dimensions")
    length = min(n, m - offset) if offset >= 0 else min(n + offset, m)
    if length <= 0:
        raise UnsupportedOpError("an empty diagonal")
    start = offset if offset >= 0 else -offset * m
    lead = L.type_of(x).shape[:-2]
    flat = L.emit("reshape", [x], {"shape": (*lead, n * m)})
    return _slice_value(L, flat, len(lead), start, start + (length - 1) * (m + 1) + 1, m + 1)


@rule("cumsum.default")
def _cumsum(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.cast(L.value(fx.args[0]), L.out_dtype(fx))
    return L.emit("cumsum", [x], {"axis": fx.args[1] % max(L.type_of(x).rank, 1)})


@rule("var.correction", "var.dim")
def _var(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    t = L.type_of(x)
    axes = fx.args[1] if len(fx.args) > 1 and fx.args[1] is not None else list(range(t.rank))
    corr = fx.kwargs.get("correction", 1)
    keep = fx.kwargs.get("keepdim", False)
    n = numel([t.shape[a] for a in axes])
    mu = L.emit("reduce_mean", [x], {"axes": tuple(axes), "keepdim": True})
    d = L.emit("sub", [x, mu])
    s = L.emit("reduce_sum", [L.emit("mul", [d, d])], {"axes": tuple(axes), "keepdim": keep})
    if not isinstance(n, int):
        raise UnsupportedOpError("var over a dynamic dimension")
    return L.emit("div", [s, L.operand(float(max(n - corr, 0)), "f32")])


# ---- linear algebra, convolution, normalisation -------------------------------------------------
@rule("mm.default", "bmm.default", "matmul.default")
def _mm(L: Lowering, fx: torch.fx.Node) -> str:
    return L.emit("matmul", [L.value(fx.args[0]), L.value(fx.args[1])])


@rule("addmm.default")
def _addmm(L: Lowering, fx: torch.fx.Node) -> str:
    bias, a, b = (L.value(v) for v in fx.args[:3])
    beta, alpha = fx.kwargs.get("beta", 1), fx.kwargs.get("alpha", 1)
    if alpha != 1:
        a = L.emit("mul", [a, L.operand(float(alpha), "f32")])
    if beta != 1:
        bias = L.emit("mul", [bias, L.operand(float(beta), "f32")])
    n = L.type_of(b).shape[-1]
    if L.type_of(bias).shape in ((n,), (1, n)):
        if L.type_of(bias).rank == 2:
            bias = L.emit("reshape", [bias], {"shape": (n,)})
        return L.emit("matmul", [a, b, bias])
    return L.emit("add", [L.emit("matmul", [a, b]), bias])


@rule("_native_batch_norm_legit_no_training.default", "_native_batch_norm_legit_functional.default")
def _batch_norm(L: Lowering, fx: torch.fx.Node) -> list:
    x, w, b, mean, var = (L.value(v) if v is not None else None for v in fx.args[:5])
    eps = fx.args[-1]
    c = L.type_of(x).shape[1]
    rank = L.type_of(x).rank
    bshape = (c,) + (1,) * (rank - 2)
    # y = x * scale + shift with scale = w / sqrt(var + eps), shift = b - mean * scale.
    # All of it is constant in inference, so constant folding leaves one mul and one add.
    inv = L.emit("rsqrt", [L.emit("add", [var, L.operand(float(eps), "f32")])])
    scale = L.emit("mul", [inv, w]) if w else inv
    shift = L.emit("neg", [L.emit("mul", [mean, scale])])
    if b:
        shift = L.emit("add", [shift, b])
    scale = L.emit("reshape", [scale], {"shape": bshape})
    shift = L.emit("reshape", [shift], {"shape": bshape})
    return [L.emit("add", [L.emit("mul", [x, scale]), shift]), None, None]


@rule("native_layer_norm.default")
def _layer_norm(L: Lowering, fx: torch.fx.Node) -> list:
    x, shape, w, b, eps = fx.args
    inputs = [L.value(x), L.value(w) if w is not None else "", L.value(b) if b is not None else ""]
    return [L.emit("layer_norm", inputs, {"n_axes": len(shape), "eps": float(eps)}), None, None]


@rule("_softmax.default", "_log_softmax.default")
def _softmax(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    op = "log_softmax" if "log" in str(fx.target) else "softmax"
    return L.emit(op, [L.cast(x, "f32")], {"axis": fx.args[1] % max(L.type_of(x).rank, 1)})


def _pair(v: Any, n: int = 2) -> tuple:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return tuple(v * n if len(v) == 1 else v)


@rule("max_pool2d_with_indices.default", "max_pool2d.default")
def _max_pool(L: Lowering, fx: torch.fx.Node) -> Any:
    args = _args(fx, None, [], 0, 1, False)
    k = _pair(args[1])
    attrs = {
        "kernel": k,
        "stride": _pair(args[2] or k),
        "padding": _pair(args[3]),
        "dilation": _pair(args[4]),
        "ceil_mode": bool(args[5]),
    }
    y = L.emit("max_pool2d", [L.value(fx.args[0])], attrs)
    return [y, None] if "indices" in str(fx.target) else y


@rule("avg_pool2d.default")
def _avg_pool(L: Lowering, fx: torch.fx.Node) -> str:
    args = _args(fx, None, [], 0, False, True, None)
    k = _pair(args[1])
    attrs = {
        "kernel": k,
        "stride": _pair(args[2] or k),
        "padding": _pair(args[3]),
        "ceil_mode": bool(args[4]),
        "count_include_pad": bool(args[5]),
        "divisor_override": args[6],
    }
    return L.emit("avg_pool2d", [L.value(fx.args[0])], attrs)


@rule("_adaptive_avg_pool2d.default", "adaptive_avg_pool2d.default")
def _adaptive(L: Lowering, fx: torch.fx.Node) -> str:
    x = L.value(fx.args[0])
    shape = L.type_of(x).shape
    if not all(isinstance(d, int) for d in shape[2:]):
        raise UnsupportedOpError("adaptive_avg_pool2d over a dynamic spatial size")
    return L.emit("adaptive_avg_pool2d", [x], {"output_size": tuple(L.shape_of(fx)[2:])})


# Ops that carry no computation in an inference graph.
IGNORED = {
    "aten._assert_tensor_metadata.default",
    "aten._assert_scalar.default",
    "aten.sym_constrain_range_for_size.default",
    "aten._assert_async.msg",
    "aten.sym_constrain_range.default",
}


def supported_ops() -> list[str]:
    """The aten ops the frontend can lower (core ATen names)."""
    return sorted(TABLE)
