"""Every IR op: its group, its attributes, and its shape/dtype rule.

The meaning of each op is defined by the NumPy reference interpreter (`interp.py`); this file
only says what comes out (dtype and shape) so the verifier can check a graph and passes can
build new nodes. Adding an op = one entry here, one in interp.py, one in codegen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy

from ...errors import GraphError
from .graph import Dim, Node, Shape, TensorType, dim

UNARY = [
    "neg",
    "abs",
    "relu",
    "gelu",
    "gelu_tanh",
    "silu",
    "sigmoid",
    "tanh",
    "exp",
    "log",
    "log1p",
    "sqrt",
    "rsqrt",
    "erf",
    "sin",
    "cos",
    "reciprocal",
    "floor",
    "ceil",
    "logical_not",
    "copy",
    "clamp",
    "leaky_relu",
    "hardsigmoid",
    "hardswish",
]
BINARY_ARITH = ["add", "sub", "mul", "div", "floordiv", "remainder", "pow", "maximum", "minimum", "bitand"]
BINARY_CMP = ["eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor"]
REDUCE = ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_any", "reduce_all", "reduce_prod"]
ELEMENTWISE = {*UNARY, *BINARY_ARITH, *BINARY_CMP, "where", "cast"}
MOVEMENT = {"permute", "expand", "slice", "cat", "pad"}
ALIAS = {"reshape"}  # output shares the input's storage; no code is emitted


def broadcast(*shapes: Shape) -> Shape:
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0]
        non1 = [d for d in dims if not (isinstance(d, int) and d == 1)]
        if not non1:
            out.append(1)
            continue
        ints = {d for d in non1 if isinstance(d, int)}
        if len(ints) > 1:
            raise GraphError(f"cannot broadcast shapes {shapes}")
        out.append(next(iter(ints)) if ints else non1[0])
    return tuple(out)


def norm_axis(axis: int, rank: int) -> int:
    if not -max(rank, 1) <= axis < max(rank, 1):
        raise GraphError(f"axis {axis} out of range for rank {rank}")
    return axis % max(rank, 1)


def pool_out(size: Dim, k: int, s: int, p: int, d: int, ceil_mode: bool) -> Dim:
    span = size + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        o = (
            sympy.ceiling(sympy.Rational(1, s) * span) + 1
            if isinstance(span, sympy.Expr)
            else -(-span // s) + 1
        )
        # PyTorch: the last window must start inside the input (or left padding)
        if isinstance(o, int) and (o - 1) * s >= size + p:
            o -= 1
        return dim(o)
    return dim(span // s + 1) if isinstance(span, int) else dim(sympy.floor(span / s) + 1)


def _elementwise(n: Node, t: list[TensorType]) -> list[TensorType]:
    shape = broadcast(*(x.shape for x in t))
    if n.op in BINARY_CMP:
        return [TensorType("bool", shape)]
    if n.op == "where":
        return [TensorType(t[1].dtype, shape)]
    if n.op == "cast":
        return [TensorType(n.attrs["dtype"], shape)]
    if n.op == "logical_not":
        return [TensorType("bool", shape)]
    return [TensorType(t[0].dtype, shape)]


@dataclass(frozen=True)
class Step:
    """One op of a `fused_elementwise` program (passes/fuse_elementwise.py). `args` index the node's
    inputs first, then the results of earlier steps: with k inputs, arg k + j is step j's result."""

    op: str
    args: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.attrs.items())
        return f"{self.op}({', '.join(f'%{a}' for a in self.args)}{extra})"


def program_types(program: tuple[Step, ...], inputs: list[TensorType]) -> list[TensorType]:
    """The type of every step of a fused program (each by its own op's rule); the last is the output."""
    env = list(inputs)
    for s in program:
        if s.op not in ELEMENTWISE or not all(0 <= a < len(env) for a in s.args):
            raise GraphError(f"fused_elementwise step {s!r} is not an elementwise op over earlier values")
        env.append(_elementwise(Node(s.op, (), (), s.attrs), [env[a] for a in s.args])[0])
    return env[len(inputs) :]


def _fused(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [program_types(n.attrs["program"], t)[-1]]


def _reduce(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    axes = {norm_axis(a, x.rank) for a in n.attrs["axes"]}
    keep = n.attrs.get("keepdim", False)
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
    dtype = "bool" if n.op in ("reduce_any", "reduce_all") else x.dtype
    return [TensorType(dtype, shape)]


def _argmax(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    a = norm_axis(n.attrs["axis"], x.rank)
    keep = n.attrs.get("keepdim", False)
    shape = tuple(1 if i == a else d for i, d in enumerate(x.shape) if keep or i != a)
    return [TensorType("i64", shape)]


def _matmul(n: Node, t: list[TensorType]) -> list[TensorType]:
    a, b = t[0], t[1]
    if a.rank < 2 or b.rank < 2:
        raise GraphError("matmul needs rank >= 2 operands")
    batch = broadcast(a.shape[:-2], b.shape[:-2])
    return [TensorType(a.dtype, (*batch, a.shape[-2], b.shape[-1]))]


# A packed GEMM's fused epilogue (attr "act", set by passes/fuse_epilogue.py) -> the WT_ACT_* code
# of kernels/wt_act.h that applies it.
GEMM_ACTS: dict[str, int] = {"relu": 1, "gelu": 2, "gelu_tanh": 3}


def _matmul_packed(n: Node, t: list[TensorType]) -> list[TensorType]:
    a = t[0]
    act = n.attrs.get("act")
    if act is not None and act not in GEMM_ACTS:
        raise GraphError(f"matmul_packed act={act!r}: expected one of {sorted(GEMM_ACTS)}")
    return [TensorType(a.dtype, (*a.shape[:-1], n.attrs["n"]))]


def _topk(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    shape = tuple(n.attrs["k"] if i == n.attrs["axis"] else d for i, d in enumerate(x.shape))
    return [TensorType(x.dtype, shape), TensorType("i64", shape)]


def _conv2d(n: Node, t: list[TensorType]) -> list[TensorType]:
    _conv_act(n)
    x, w = t[0], t[1]
    (sh, sw), (ph, pw), (dh, dw) = n.attrs["stride"], n.attrs["padding"], n.attrs["dilation"]
    oh = pool_out(x.shape[2], w.shape[2], sh, ph, dh, False)
    ow = pool_out(x.shape[3], w.shape[3], sw, pw, dw, False)
    return [TensorType(x.dtype, (x.shape[0], w.shape[0], oh, ow))]


# A conv's fused epilogue (attr "act", set by passes/conv_bn.py): the clamp bounds it applies.
CONV_ACTS: dict[str, tuple[float, float]] = {"relu": (0.0, float("inf")), "relu6": (0.0, 6.0)}


def _conv_act(n: Node) -> None:
    if n.attrs.get("act") is not None and n.attrs["act"] not in CONV_ACTS:
        raise GraphError(f"{n.op} act={n.attrs['act']!r}: expected one of {sorted(CONV_ACTS)}")


def _conv2d_packed(n: Node, t: list[TensorType]) -> list[TensorType]:
    """conv2d with weights in GEMM panels (passes/pack_conv.py); 2nd output: the kernel's scratch."""
    _conv_act(n)
    x, a = t[0], n.attrs
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    oh = pool_out(x.shape[2], kh, sh, ph, dh, False)
    ow = pool_out(x.shape[3], kw, sw, pw, dw, False)
    return [TensorType(x.dtype, (x.shape[0], a["oc"], oh, ow)), TensorType("f32", (a["scratch"],))]


def _dwconv2d(n: Node, t: list[TensorType]) -> list[TensorType]:
    """Depthwise conv2d (passes/pack_conv.py); 2nd output: the kernel's padded-plane scratch."""
    return [_conv2d(n, t)[0], TensorType("f32", (n.attrs["scratch"],))]


def _pool2d(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    (kh, kw), (sh, sw), (ph, pw) = n.attrs["kernel"], n.attrs["stride"], n.attrs["padding"]
    dh, dw = n.attrs.get("dilation", (1, 1))
    ceil = n.attrs.get("ceil_mode", False)
    oh, ow = pool_out(x.shape[2], kh, sh, ph, dh, ceil), pool_out(x.shape[3], kw, sw, pw, dw, ceil)
    return [TensorType(x.dtype, (*x.shape[:2], oh, ow))]


def _adaptive(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    return [TensorType(x.dtype, (*x.shape[:2], *n.attrs["output_size"]))]


def _same(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [t[0]]


def _permute(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    return [TensorType(x.dtype, tuple(x.shape[p] for p in n.attrs["perm"]))]


def _shape_attr(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [TensorType(t[0].dtype, tuple(n.attrs["shape"]))]


def _slice(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    a = n.attrs["axis"]
    length = dim(n.attrs["end"] - n.attrs["start"])
    step = n.attrs["step"]
    size = dim((length + step - 1) // step) if isinstance(length, int) else dim(sympy.ceiling(length / step))
    return [TensorType(x.dtype, (*x.shape[:a], size, *x.shape[a + 1 :]))]


def _cat(n: Node, t: list[TensorType]) -> list[TensorType]:
    a = n.attrs["axis"]
    total = dim(sum((x.shape[a] for x in t), sympy.Integer(0)))
    return [TensorType(t[0].dtype, (*t[0].shape[:a], total, *t[0].shape[a + 1 :]))]


def _pad(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    pads = n.attrs["pads"]  # [(before, after)] per axis, full rank
    return [TensorType(x.dtype, tuple(dim(d + b + a) for d, (b, a) in zip(x.shape, pads, strict=True)))]


def _gather(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [TensorType(t[0].dtype, t[1].shape)]


def _index(n: Node, t: list[TensorType]) -> list[TensorType]:
    x, idx = t[0], t[1:]
    return [TensorType(x.dtype, (*broadcast(*(i.shape for i in idx)), *x.shape[len(idx) :]))]


def _arange(n: Node, t: list[TensorType]) -> list[TensorType]:
    start, end, step = n.attrs["start"], n.attrs["end"], n.attrs["step"]
    length = dim(end - start)
    size = (
        dim(sympy.ceiling(length / step))
        if isinstance(length, sympy.Expr)
        else max(0, -(-length // step) if step > 0 else -(length // step))
    )
    return [TensorType(n.attrs["dtype"], (size,))]


def _full(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [TensorType(n.attrs["dtype"], tuple(n.attrs["shape"]))]


def _layer_norm(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [t[0]]


def _cumsum(n: Node, t: list[TensorType]) -> list[TensorType]:
    return [t[0]]


def _attention(n: Node, t: list[TensorType]) -> list[TensorType]:
    """attention(q, k, v[, mask]): inputs are the buffers the operands are read from (strided views in
    attrs q/k/v/mask, see passes/fuse_attention.py); the output has shape attrs["out_shape"]."""
    if len(t) not in (3, 4) or any(x.dtype != "f32" for x in t):
        raise GraphError(f"attention takes 3 or 4 f32 inputs (q, k, v[, mask]), got {[str(x) for x in t]}")
    if len(n.attrs["dims"]) != 6 or (len(t) == 4) != ("mask" in n.attrs):
        raise GraphError("attention attrs: dims=(B, H, Lq, Lk, D, Dv) and a mask view iff a mask input")
    return [TensorType("f32", tuple(n.attrs["out_shape"]))]


INFER: dict[str, Callable[[Node, list[TensorType]], list[TensorType]]] = {
    **{op: _elementwise for op in ELEMENTWISE},
    **{op: _reduce for op in REDUCE},
    "argmax": _argmax,
    "topk": _topk,
    "scatter_value": _same,
    "matmul": _matmul,
    "matmul_packed": _matmul_packed,
    "conv2d": _conv2d,
    "conv2d_packed": _conv2d_packed,
    "dwconv2d": _dwconv2d,
    "max_pool2d": _pool2d,
    "avg_pool2d": _pool2d,
    "adaptive_avg_pool2d": _adaptive,
    "softmax": _same,
    "log_softmax": _same,
    "layer_norm": _layer_norm,
    "cumsum": _cumsum,
    "fused_elementwise": _fused,
    "attention": _attention,
    "permute": _permute,
    "expand": _shape_attr,
    "reshape": _shape_attr,
    "slice": _slice,
    "cat": _cat,
    "pad": _pad,
    "gather": _gather,
    "index": _index,
    "arange": _arange,
    "full": _full,
}

ALL_OPS = tuple(sorted(INFER))


def infer(node: Node, in_types: list[TensorType]) -> list[TensorType]:
    if node.op not in INFER:
        raise GraphError(f"unknown IR op {node.op!r}")
    return INFER[node.op](node, in_types)
