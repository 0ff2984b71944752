"""NumPy reference interpreter: the meaning of every IR op.

Slow and obvious on purpose. The compiler's passes must not change what this computes, and the
generated wasm is tested against both this and PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ...errors import GraphError
from .graph import DTYPES, Graph, Node, Symbol, evaluate_dim, evaluate_shape
from .ops import CONV_ACTS, norm_axis

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _f(x: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return fn(x.astype(np.float64)).astype(x.dtype)


UNARY_FN: dict[str, Callable[[np.ndarray, Node], np.ndarray]] = {
    "neg": lambda x, n: -x,
    "abs": lambda x, n: np.abs(x),
    "relu": lambda x, n: np.maximum(x, 0).astype(x.dtype),
    "gelu": lambda x, n: _f(x, lambda v: 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0)))),
    "gelu_tanh": lambda x, n: _f(
        x, lambda v: 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
    ),
    "silu": lambda x, n: _f(x, lambda v: v / (1 + np.exp(-v))),
    "sigmoid": lambda x, n: _f(x, lambda v: 1 / (1 + np.exp(-v))),
    "tanh": lambda x, n: _f(x, np.tanh),
    "exp": lambda x, n: _f(x, np.exp),
    "log": lambda x, n: _f(x, np.log),
    "log1p": lambda x, n: _f(x, np.log1p),
    "sqrt": lambda x, n: _f(x, np.sqrt),
    "rsqrt": lambda x, n: _f(x, lambda v: 1 / np.sqrt(v)),
    "erf": lambda x, n: _f(x, _erf),
    "sin": lambda x, n: _f(x, np.sin),
    "cos": lambda x, n: _f(x, np.cos),
    "reciprocal": lambda x, n: _f(x, lambda v: 1 / v),
    "floor": lambda x, n: np.floor(x) if x.dtype.kind == "f" else x,
    "ceil": lambda x, n: np.ceil(x) if x.dtype.kind == "f" else x,
    "logical_not": lambda x, n: ~x.astype(bool),
    "copy": lambda x, n: x.copy(),
    "clamp": lambda x, n: np.clip(
        x,
        n.attrs.get("min") if n.attrs.get("min") is not None else -np.inf,
        n.attrs.get("max") if n.attrs.get("max") is not None else np.inf,
    ).astype(x.dtype),
    "leaky_relu": lambda x, n: np.where(x >= 0, x, x * np.float32(n.attrs["slope"])).astype(x.dtype),
    "hardsigmoid": lambda x, n: (np.clip(x / 6 + 0.5, 0, 1)).astype(x.dtype),
    "hardswish": lambda x, n: (x * np.clip(x / 6 + 0.5, 0, 1)).astype(x.dtype),
}


def _floordiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.floor_divide(a, b) if a.dtype.kind != "f" else np.floor(a / b).astype(a.dtype)


BINARY_FN: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": lambda a, b: (a / b).astype(a.dtype),
    "floordiv": _floordiv,
    "remainder": lambda a, b: np.mod(a, b),
    "pow": lambda a, b: np.power(a.astype(np.float64), b).astype(a.dtype),
    "maximum": np.maximum,
    "minimum": np.minimum,
    "bitand": np.bitwise_and,
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}

REDUCE_FN = {
    "reduce_sum": np.sum,
    "reduce_mean": np.mean,
    "reduce_max": np.max,
    "reduce_min": np.min,
    "reduce_any": np.any,
    "reduce_all": np.all,
    "reduce_prod": np.prod,
}


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(x - m)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


def _conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, n: Node) -> np.ndarray:
    (sh, sw), (ph, pw), (dh, dw), g = (
        n.attrs["stride"],
        n.attrs["padding"],
        n.attrs["dilation"],
        n.attrs["groups"],
    )
    _, _, H, W = x.shape
    OC, CG, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    out = np.zeros((x.shape[0], OC, OH, OW), np.float64)
    ocg = OC // g
    for gi in range(g):
        xs = xp[:, gi * CG : (gi + 1) * CG].astype(np.float64)
        ws = w[gi * ocg : (gi + 1) * ocg].astype(np.float64)
        for kh in range(KH):
            for kw in range(KW):
                patch = xs[
                    :,
                    :,
                    kh * dh : kh * dh + sh * (OH - 1) + 1 : sh,
                    kw * dw : kw * dw + sw * (OW - 1) + 1 : sw,
                ]
                out[:, gi * ocg : (gi + 1) * ocg] += np.einsum("nchw,oc->nohw", patch, ws[:, :, kh, kw])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out.astype(np.float32)


def _conv_act(y: np.ndarray, n: Node) -> np.ndarray:
    """The fused epilogue: clamp to the act's bounds (NaN stays NaN, like torch)."""
    if not n.attrs.get("act"):
        return y
    lo, hi = CONV_ACTS[n.attrs["act"]]
    return np.clip(y, np.float32(lo), np.float32(hi)).astype(np.float32)


def _pool2d(x: np.ndarray, n: Node, oshape: tuple[int, ...]) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = n.attrs["kernel"], n.attrs["stride"], n.attrs["padding"]
    dh, dw = n.attrs.get("dilation", (1, 1))
    is_max = n.op == "max_pool2d"
    H, W = x.shape[2:]
    OH, OW = oshape[2], oshape[3]
    out = np.zeros(oshape, np.float32)
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * sh - ph, ow * sw - pw
            hs = [h0 + i * dh for i in range(kh)]
            ws = [w0 + j * dw for j in range(kw)]
            hv = [h for h in hs if 0 <= h < H]
            wv = [w for w in ws if 0 <= w < W]
            win = x[:, :, hv][:, :, :, wv]
            if is_max:
                out[:, :, oh, ow] = win.max(axis=(2, 3))
                continue
            if n.attrs.get("divisor_override"):
                div = n.attrs["divisor_override"]
            elif n.attrs.get("count_include_pad", True):
                he, we = min(h0 + kh, H + ph), min(w0 + kw, W + pw)
                div = (he - h0) * (we - w0)
            else:
                div = len(hv) * len(wv)
            out[:, :, oh, ow] = win.sum(axis=(2, 3), dtype=np.float64) / div
    return out


def _adaptive_avg(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    N, C, H, W = x.shape
    out = np.zeros((N, C, oh, ow), np.float32)
    for i in range(oh):
        h0, h1 = (i * H) // oh, -((-(i + 1) * H) // oh)
        for j in range(ow):
            w0, w1 = (j * W) // ow, -((-(j + 1) * W) // ow)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3), dtype=np.float64)
    return out


def _strided(buf: np.ndarray, spec: tuple, shape: tuple[int, ...], bind: dict) -> np.ndarray:
    """The logical (B, H, L, D) tensor an attention operand reads: element offset + strides into buf."""
    off, *strides = (evaluate_dim(s, bind) for s in spec)
    flat = buf.reshape(-1)
    return np.lib.stride_tricks.as_strided(flat[off:], shape, [s * flat.itemsize for s in strides])


def _attention(args: list, n: Node, bind: dict, out_shape: tuple[int, ...]) -> np.ndarray:
    """softmax(q kᵀ · scale + mask [+ causal -inf above the diagonal]) v, per (batch, head), in float64.

    A row whose scores are all -inf gives NaN like torch.softmax, or 0 when attrs["safe"] (the
    `_safe_softmax` of torch's scaled_dot_product_attention)."""
    a = n.attrs
    B, H, Lq, Lk, D, Dv = (evaluate_dim(d, bind) for d in a["dims"])
    q = _strided(args[0], (*a["q"], 1), (B, H, Lq, D), bind).astype(np.float64)
    k = _strided(args[1], (*a["k"], 1), (B, H, Lk, D), bind).astype(np.float64)
    v = _strided(args[2], (*a["v"], 1), (B, H, Lk, Dv), bind).astype(np.float64)
    s = np.matmul(q, k.swapaxes(-1, -2)) * np.float32(a["scale"])
    if len(args) > 3:
        s = s + _strided(args[3], a["mask"], (B, H, Lq, Lk), bind)
    if a["causal"]:
        s = np.where(np.arange(Lk)[None, :] <= np.arange(Lq)[:, None], s, -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = s.max(axis=-1, keepdims=True) if Lk else np.full((B, H, Lq, 1), -np.inf)
        dead = m == -np.inf
        e = np.exp(s - np.where(dead, 0, m))
        p = e / e.sum(axis=-1, keepdims=True)
    if a["safe"]:
        p = np.where(dead, 0, p)
    out = np.zeros(out_shape, np.float32)
    _strided(out, a["out"] + (1,), (B, H, Lq, Dv), bind)[...] = np.matmul(p, v)
    return out


def run_node(
    n: Node, args: list[np.ndarray | None], bind: dict, out_shapes: list[tuple[int, ...]]
) -> list[np.ndarray]:
    op, a = n.op, n.attrs
    x = args[0] if args else None
    if op in UNARY_FN:
        return [np.asarray(UNARY_FN[op](x, n))]
    if op in BINARY_FN:
        return [np.asarray(BINARY_FN[op](args[0], args[1]))]
    if op == "where":
        return [np.where(args[0].astype(bool), args[1], args[2])]
    if op == "cast":
        return [x.astype(DTYPES[a["dtype"]])]
    if op == "fused_elementwise":  # passes/fuse_elementwise.py: the program's ops, one at a time
        env = list(args)
        for s in a["program"]:
            env.extend(run_node(Node(s.op, (), (), s.attrs), [env[i] for i in s.args], bind, []))
        return [env[-1]]
    if op in REDUCE_FN:
        axes = tuple(norm_axis(i, x.ndim) for i in a["axes"])
        r = REDUCE_FN[op](x, axis=axes, keepdims=a.get("keepdim", False))
        return [np.asarray(r).astype(x.dtype if op not in ("reduce_any", "reduce_all") else bool)]
    if op == "argmax":
        return [np.asarray(np.argmax(x, axis=a["axis"], keepdims=a.get("keepdim", False))).astype(np.int64)]
    if op == "matmul":
        y = np.matmul(args[0].astype(np.float64), args[1].astype(np.float64))
        if len(args) > 2 and args[2] is not None:
            y = y + args[2]
        return [y.astype(args[0].dtype)]
    if op == "matmul_packed":  # weights in panels (P, K, PANEL); see passes/pack_weights.py
        wp = args[1]
        w = wp.transpose(1, 0, 2).reshape(wp.shape[1], -1)[:, : a["n"]]
        y = np.matmul(args[0].astype(np.float64), w.astype(np.float64))
        if len(args) > 2 and args[2] is not None:
            y = y + args[2]
        y = y.astype(args[0].dtype)
        return [UNARY_FN[a["act"]](y, n) if a.get("act") else y]  # fused epilogue: passes/fuse_epilogue.py
    if op == "conv2d":
        return [_conv_act(_conv2d(x, args[1], args[2] if len(args) > 2 else None, n), n)]
    if op == "dwconv2d":  # depthwise conv2d + its scratch; see passes/pack_conv.py
        y = _conv_act(_conv2d(x, args[1], args[2] if len(args) > 2 else None, n), n)
        return [y, np.zeros(out_shapes[1], np.float32)]
    if op == "conv2d_packed":  # weights in panels (groups, panels, K, MR); see passes/pack_conv.py
        wp, oc = args[1], a["oc"]
        w = wp.transpose(0, 1, 3, 2).reshape(wp.shape[0], -1, wp.shape[2])[:, : oc // wp.shape[0]]
        w = w.reshape(oc, -1, *a["kernel"])
        y = _conv_act(_conv2d(x, w, args[2] if len(args) > 2 else None, n), n)
        return [y, np.zeros(out_shapes[1], np.float32)]
    if op in ("max_pool2d", "avg_pool2d"):
        return [_pool2d(x, n, out_shapes[0])]
    if op == "adaptive_avg_pool2d":
        return [_adaptive_avg(x, *out_shapes[0][2:])]
    if op == "softmax":
        return [_softmax(x, a["axis"])]
    if op == "log_softmax":
        return [np.log(_softmax(x.astype(np.float64), a["axis"])).astype(x.dtype)]
    if op == "layer_norm":
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
    if op == "scatter_value":  # torch.scatter(x, axis, index, value)
        out = x.copy()
        pos = list(np.indices(args[1].shape, sparse=True))
        pos[a["axis"]] = args[1]
        out[tuple(pos)] = a["value"]
        return [out]
    if op == "topk":  # sorted; ties keep the lower index first (stable)
        key = -x if a["largest"] else x
        idx = np.take(np.argsort(key, axis=a["axis"], kind="stable"), np.arange(a["k"]), axis=a["axis"])
        return [np.take_along_axis(x, idx, a["axis"]), idx.astype(np.int64)]
    if op == "attention":
        return [_attention(args, n, bind, out_shapes[0])]
    if op == "cumsum":
        return [np.cumsum(x, axis=a["axis"]).astype(x.dtype)]
    if op == "permute":
        return [np.transpose(x, a["perm"]).copy()]
    if op in ("expand", "reshape"):
        shape = evaluate_shape(a["shape"], bind)
        return [np.broadcast_to(x, shape).copy() if op == "expand" else x.reshape(shape)]
    if op == "slice":
        s = [slice(None)] * x.ndim
        s[a["axis"]] = slice(evaluate_dim(a["start"], bind), evaluate_dim(a["end"], bind), a["step"])
        return [x[tuple(s)].copy()]
    if op == "cat":
        return [np.concatenate(args, axis=a["axis"])]
    if op == "pad":
        return [np.pad(x, a["pads"], constant_values=a.get("value", 0))]
    if op == "gather":  # torch semantics: the index may be smaller than x along every axis
        pos = list(np.indices(args[1].shape, sparse=True))
        pos[a["axis"]] = args[1]
        return [x[tuple(pos)]]
    if op == "index":
        idx = [np.where(i < 0, i + x.shape[k], i) for k, i in enumerate(args[1:])]
        return [x[tuple(idx)]]
    if op == "arange":
        start, end = evaluate_dim(a["start"], bind), evaluate_dim(a["end"], bind)
        return [np.arange(start, end, a["step"]).astype(DTYPES[a["dtype"]])]
    if op == "full":
        return [np.full(evaluate_shape(a["shape"], bind), a["value"], DTYPES[a["dtype"]])]
    raise GraphError(f"interpreter has no rule for op {op!r}")


def bind_symbols(symbols: dict[str, Symbol], inputs: dict[str, np.ndarray]) -> dict:
    import sympy

    return {
        sympy.Symbol(s.name, integer=True, positive=True): inputs[s.input].shape[s.axis]
        for s in symbols.values()
    }


def run(g: Graph, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Evaluate the graph on named numpy inputs; returns the outputs in order."""
    env: dict[str, np.ndarray] = dict(g.consts)
    for name in g.inputs:
        env[name] = np.asarray(inputs[name], dtype=DTYPES[g.types[name].dtype])
    bind = bind_symbols(g.symbols, env)
    for n in g.nodes:
        args = [env[i] if i else None for i in n.inputs]
        shapes = [evaluate_shape(g.types[o].shape, bind) for o in n.outputs]
        outs = run_node(n, args, bind, shapes)
        for name, val, shape in zip(n.outputs, outs, shapes, strict=True):
            if tuple(val.shape) != shape:
                raise GraphError(f"{n.op} produced shape {val.shape}, IR says {shape} ({name})")
            env[name] = val
    return [env[o] for o in g.outputs]
