"""Reduced-precision weights: rewrite packed GEMMs, convolutions and embedding tables (docs/quantization.md).

Runs after pack_conv (so batch norm is folded and bias + activation are fused into the GEMMs and
convs it rewrites), only when `CompileOptions.quantize` asks for it (pipeline.run_passes):

    fp16   matmul_packed -> matmul_f16, conv2d_packed -> conv2d_f16 (panels stored as IEEE halves),
           index(table, ids) -> f16_to_f32(index(table16, ids)); compute stays float32. A tensor with a
           value a half cannot hold (|w| > 65504, inf, NaN) stays float32.
    int8   matmul_packed -> q8_rows + matmul_q8 (one q8_rows per GEMM input: the q/k/v projections of
           an attention block share it), conv2d_packed -> conv2d_q8, dwconv2d -> dwconv2d_q8, and
           index(table, ids) -> index(codes, ids) · index(row scales, ids) (symmetric int8 per row).
           GEMM and conv weights are 8-bit, or 7-bit when the artifact gets a relaxed-SIMD build
           (seven_bit): the unsigned 7-bit operand of i32x4.relaxed_dot_i8x16_i7x16_add_s.
    int8-static   int8, with each convolution's activation range calibrated from `calibration`
           (the inputs are run through the float graph by the reference interpreter) instead of
           measured per call; GEMMs keep per-row dynamic ranges.

Depthwise filters, biases, norms and other small constants stay float32 (they are < 1% of a model's
bytes). A model with nothing to rewrite is an error (QuantizationError), not a silent float32 artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import QuantizationError
from ..ir.graph import Graph, Node, TensorType, evaluate_shape
from ..ir.interp import bind_symbols, run_node
from ..ir.op import infer
from ..ops.quant import conv8_layout, scratch_layout
from ..ops.quant_format import (
    F32,
    W7,
    W7_BIAS,
    W8,
    conv_channel_pad,
    pack_conv_q8,
    pack_gemm_q8,
    pad_to,
    q8_params,
    quantize_channels,
    to_f16,
)
from .pack_weights import PANEL

FORMATS = ("fp16", "int8", "int8-static")
MIN_TABLE = 4096  # embedding tables smaller than this many values stay float32
Q8_CONV_MAX_GROUPS = 16384  # = WT_Q8_MAX_GROUPS in kernels/wt_conv_q8.h
Q8_MAX_TAPS = 64  # depthwise taps the int8 kernel keeps splat on its stack


@dataclass
class _State:
    g: Graph
    fmt: str
    ranges: dict[str, tuple[float, float]]
    wbias: int  # 0: 8-bit GEMM / conv weights; W7_BIAS: 7-bit ones for the relaxed dot product
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    types: dict[str, TensorType] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    rows: dict[tuple[str, int], tuple[str, str, str]] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)  # what was rewritten, for the error when nothing is

    def const(self, name: str, arr: np.ndarray, dtype: str) -> str:
        self.consts[name] = np.ascontiguousarray(arr)
        self.types[name] = TensorType(dtype, tuple(arr.shape))
        return name

    def value(self, name: str, t: TensorType) -> str:
        self.types[name] = t
        return name


def quantize(
    g: Graph, fmt: str, calibration: list[dict[str, np.ndarray]] | None = None, seven_bit: bool = False
) -> Graph:
    """The graph with reduced-precision weights in format `fmt` (module docstring). seven_bit: GEMM and
    conv weights in 7 bits, the operand relaxed SIMD's dot product needs (the artifact has a relaxed build)."""
    if fmt not in FORMATS:
        raise QuantizationError(f"quantize={fmt!r}: expected one of {list(FORMATS)} (or None)")
    ranges = _calibrate(g, calibration) if fmt == "int8-static" else {}
    st = _State(g, fmt, ranges, W7_BIAS if seven_bit else 0, dict(g.consts), dict(g.types))
    for n in g.nodes:
        rewrite = _REWRITES.get((n.op, "fp16" if fmt == "fp16" else "int8"))
        if rewrite is None or not rewrite(st, n):
            st.nodes.append(n)
    if not st.done:
        raise QuantizationError(
            f"quantize={fmt!r}: the model has no layer to quantize — no Linear / matmul with constant weights, "
            "no Conv2d with constant weights and no embedding table of at least "
            f"{MIN_TABLE} values. Compile it without quantize."
        )
    used = {i for n in st.nodes for i in n.inputs if i}
    consts = {k: v for k, v in st.consts.items() if k in used or k in g.outputs}
    keep = set(g.inputs) | set(consts) | {o for n in st.nodes for o in n.outputs}
    return g.replace(nodes=tuple(st.nodes), consts=consts, types={k: t for k, t in st.types.items() if k in keep})


# ---- GEMMs ------------------------------------------------------------------------------------------
def _unpack_gemm(wp: np.ndarray, n: int) -> np.ndarray:
    """passes/pack_weights.py panels (P, K, 16) -> W (K, n)."""
    return wp.transpose(1, 0, 2).reshape(wp.shape[1], -1)[:, :n]


def _gemm_f16(st: _State, n: Node) -> bool:
    wp = st.g.consts.get(n.inputs[1])
    h = None if wp is None else to_f16(wp)
    if h is None:
        return False
    name = st.const(f"{n.inputs[1]}_f16", h, "f16")
    st.nodes.append(Node("matmul_f16", (n.inputs[0], name, *n.inputs[2:]), n.outputs, dict(n.attrs), n.source))
    st.done.append(n.outputs[0])
    return True


def _gemm_q8(st: _State, n: Node) -> bool:
    wp = st.g.consts.get(n.inputs[1])
    if wp is None or wp.shape[2] != PANEL:
        return False
    cols = n.attrs["n"]
    w = _unpack_gemm(wp, cols)
    k = w.shape[0]
    kp = -(-max(k, 1) // 4) * 4
    q, scale = quantize_channels(w, axis=1, qmax=W7 if st.wbias else W8)
    npad = -(-cols // 16) * 16
    base = n.inputs[1]
    wq = st.const(f"{base}_q8", pack_gemm_q8(q, st.wbias), "i8")
    ws = st.const(f"{base}_q8scale", pad_to(scale, npad), "f32")
    wsum = st.const(f"{base}_q8sum", pad_to(q.astype(np.int32).sum(axis=0, dtype=np.int32), npad), "i32")
    x = n.inputs[0]
    key = (x, kp)
    if key not in st.rows:  # one set of codes per GEMM input (q, k, v share theirs)
        xt = st.types[x]
        rows_t = TensorType("f32", (*xt.shape[:-1], xt.shape[-1]))
        outs = (f"{x}_q8", f"{x}_q8s", f"{x}_q8z")
        probe = Node("q8_rows", (x,), outs, {"kp": kp})
        for o, t in zip(outs, infer(probe, [rows_t]), strict=True):
            st.value(o, t)
        st.nodes.append(Node("q8_rows", (x,), outs, {"kp": kp}, n.source))
        st.rows[key] = outs
    qn, sn, zn = st.rows[key]
    out = n.outputs[0]
    out_t = st.types[out]
    attrs = {"n": cols, "k": k, "wbias": st.wbias, **({"act": n.attrs["act"]} if n.attrs.get("act") else {})}
    ins = (qn, sn, zn, wq, ws, wsum, *n.inputs[2:])
    flat = TensorType("f32", (st.types[qn].shape[0], cols))
    if out_t.shape == flat.shape:
        st.nodes.append(Node("matmul_q8", ins, (out,), attrs, n.source))
    else:  # rows come out flat: a reshape (an alias, no copy) gives the GEMM's own output shape
        tmp = st.value(f"{out}_q8flat", flat)
        st.nodes.append(Node("matmul_q8", ins, (tmp,), attrs, n.source))
        st.nodes.append(Node("reshape", (tmp,), (out,), {"shape": out_t.shape}, n.source))
    st.done.append(out)
    return True


# ---- convolutions -----------------------------------------------------------------------------------
def _unpack_conv(wp: np.ndarray, oc: int, kernel: tuple[int, int]) -> np.ndarray:
    """passes/pack_conv.py panels (groups, panels, K, MR) -> W (OC, cg, KH, KW)."""
    w = wp.transpose(0, 1, 3, 2).reshape(wp.shape[0], -1, wp.shape[2])[:, : oc // wp.shape[0]]
    return w.reshape(oc, -1, *kernel)


def _conv_f16(st: _State, n: Node) -> bool:
    wp = st.g.consts.get(n.inputs[1])
    h = None if wp is None else to_f16(wp)
    if h is None:
        return False
    name = st.const(f"{n.inputs[1]}_f16", h, "f16")
    attrs = {k: v for k, v in n.attrs.items() if k != "scratch"}
    st.nodes.append(Node("conv2d_f16", (n.inputs[0], name, *n.inputs[2:]), n.outputs[:1], attrs, n.source))
    st.types.pop(n.outputs[1], None)
    st.done.append(n.outputs[0])
    return True


def _static_spatial(t: TensorType) -> bool:
    return all(isinstance(d, int) for d in t.shape[1:])


def _conv_q8(st: _State, n: Node) -> bool:
    depthwise = n.op == "dwconv2d"
    x, wname = n.inputs[0], n.inputs[1]
    xt, wp = st.types[x], st.g.consts.get(wname)
    if wp is None or not _static_spatial(xt) or xt.rank != 4:
        return False
    a = dict(n.attrs)
    if depthwise:
        oc, kernel, groups = int(wp.shape[0]), (int(wp.shape[2]), int(wp.shape[3])), int(xt.shape[1])
        if kernel[0] * kernel[1] > Q8_MAX_TAPS:
            return False
        w = wp
    else:
        oc, kernel, groups = a["oc"], tuple(a["kernel"]), a["groups"]
        w = _unpack_conv(wp, oc, kernel)
        if -(-(w.shape[1]) // 4) * kernel[0] * kernel[1] > Q8_CONV_MAX_GROUPS:
            return False
    q, scale = quantize_channels(w, axis=0, qmax=W7 if st.wbias and not depthwise else W8)
    wsum = q.astype(np.int32).reshape(oc, -1).sum(axis=1, dtype=np.int32)
    base = f"{wname}_{'dw' if depthwise else 'c'}q8"
    if depthwise:
        wq = st.const(base, q.reshape(oc, -1), "i8")
        ws, wsm = st.const(f"{base}scale", scale, "f32"), st.const(f"{base}sum", wsum, "i32")
    else:
        wq = st.const(base, pack_conv_q8(q, groups, st.wbias), "i8")
        ws = st.const(f"{base}scale", conv_channel_pad(scale, groups), "f32")
        wsm = st.const(f"{base}sum", conv_channel_pad(wsum, groups), "i32")
    slack = 32 * a["stride"][1] + 64
    attrs = {k: v for k, v in a.items() if k != "scratch"}
    attrs.update(oc=oc, kernel=kernel, groups=groups, slack=slack)
    if not depthwise:
        attrs["wbias"] = st.wbias
    if x in st.ranges:  # int8-static: the calibrated range of this conv's input
        s, inv, zp = q8_params(np.asarray([st.ranges[x][0]], F32), np.asarray([st.ranges[x][1]], F32))
        if not s[0] > 0:
            raise QuantizationError(
                f"int8-static: the calibration inputs give the input of the convolution at {n.source or x!r} "
                f"the range [{st.ranges[x][0]}, {st.ranges[x][1]}]: no usable scale. Use calibration inputs "
                "that exercise the model (real data), or quantize='int8' (dynamic ranges)."
            )
        attrs["static"] = (float(s[0]), float(inv[0]), int(zp[0]))
    _, _, img = conv8_layout(xt, attrs, not depthwise)
    attrs["scratch"] = scratch_layout(xt.shape[0], img, slack)[1]
    op = "dwconv2d_q8" if depthwise else "conv2d_q8"
    scratch = st.value(f"{n.outputs[0]}_q8scratch", TensorType("u8", (attrs["scratch"],)))
    for old in n.outputs[1:]:  # the float kernel's scratch
        st.types.pop(old, None)
    st.nodes.append(Node(op, (x, wq, ws, wsm, *n.inputs[2:]), (n.outputs[0], scratch), attrs, n.source))
    st.done.append(n.outputs[0])
    return True


# ---- embedding tables -------------------------------------------------------------------------------
def _table(st: _State, n: Node) -> np.ndarray | None:
    """The float32 constant table of an embedding lookup (one index tensor, on axis 0), else None."""
    t = st.g.consts.get(n.inputs[0])
    if len(n.inputs) != 2 or t is None or t.dtype != F32 or t.ndim != 2 or t.size < MIN_TABLE:
        return None
    return t


def _index_f16(st: _State, n: Node) -> bool:
    t = _table(st, n)
    h = None if t is None else to_f16(t)
    if h is None:
        return False
    name = st.const(f"{n.inputs[0]}_f16", h, "f16")
    out = n.outputs[0]
    rows = st.value(f"{out}_f16", TensorType("f16", st.types[out].shape))
    st.nodes.append(Node("index", (name, n.inputs[1]), (rows,), dict(n.attrs), n.source))
    st.nodes.append(Node("f16_to_f32", (rows,), (out,), {}, n.source))
    st.done.append(out)
    return True


def _index_q8(st: _State, n: Node) -> bool:
    t = _table(st, n)
    if t is None:
        return False
    q, scale = quantize_channels(t, axis=0)
    codes = st.const(f"{n.inputs[0]}_q8", q, "i8")
    scales = st.const(f"{n.inputs[0]}_q8scale", scale, "f32")
    out = n.outputs[0]
    shape = st.types[out].shape
    qv = st.value(f"{out}_q8", TensorType("i8", shape))
    sv = st.value(f"{out}_q8s", TensorType("f32", shape[:-1]))
    sv1 = st.value(f"{out}_q8s1", TensorType("f32", (*shape[:-1], 1)))
    fv = st.value(f"{out}_q8f", TensorType("f32", shape))
    ids = n.inputs[1]
    st.nodes += [
        Node("index", (codes, ids), (qv,), {}, n.source),
        Node("index", (scales, ids), (sv,), {}, n.source),
        Node("reshape", (sv,), (sv1,), {"shape": (*shape[:-1], 1)}, n.source),
        Node("cast", (qv,), (fv,), {"dtype": "f32"}, n.source),
        Node("mul", (fv, sv1), (out,), {}, n.source),
    ]
    st.done.append(out)
    return True


_REWRITES: dict[tuple[str, str], Any] = {
    ("matmul_packed", "fp16"): _gemm_f16,
    ("conv2d_packed", "fp16"): _conv_f16,
    ("index", "fp16"): _index_f16,
    ("matmul_packed", "int8"): _gemm_q8,
    ("conv2d_packed", "int8"): _conv_q8,
    ("dwconv2d", "int8"): _conv_q8,
    ("index", "int8"): _index_q8,
}


# ---- calibration ------------------------------------------------------------------------------------
def _calibrate(g: Graph, calibration: list[dict[str, np.ndarray]] | None) -> dict[str, tuple[float, float]]:
    """min(0, min) and max(0, max) of every convolution input over the calibration inputs."""
    if not calibration:
        raise QuantizationError(
            "quantize='int8-static' needs calibration inputs: compile(..., calibration=[inputs, ...]) "
            "(or --calibration FILE.npy): a few real inputs shaped like the example inputs"
        )
    watch = {n.inputs[0] for n in g.nodes if n.op in ("conv2d_packed", "dwconv2d") and n.inputs[1] in g.consts}
    ranges: dict[str, tuple[float, float]] = {}
    for sample in calibration:
        env: dict[str, Any] = dict(g.consts)
        env.update(sample)
        bind = bind_symbols(g.symbols, env)
        for n in g.nodes:
            args = [env[i] if i else None for i in n.inputs]
            shapes = [evaluate_shape(g.types[o].shape, bind) for o in n.outputs]
            for o, v in zip(n.outputs, run_node(n, args, bind, shapes), strict=True):
                env[o] = v
        for v in watch:
            x = np.asarray(env[v], F32)
            lo, hi = min(0.0, float(np.nanmin(x))), max(0.0, float(np.nanmax(x)))
            old = ranges.get(v, (0.0, 0.0))
            ranges[v] = (min(old[0], lo), max(old[1], hi))
    return ranges
