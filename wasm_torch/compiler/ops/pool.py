"""2-D pooling: max, average (count_include_pad, divisor_override, ceil_mode) and adaptive average."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..codegen.dims import c_dim
from ..ir.graph import Node, TensorType, numel
from ..ir.op import OpDef, pool_out, register


def _pool_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    (kh, kw), (sh, sw), (ph, pw) = n.attrs["kernel"], n.attrs["stride"], n.attrs["padding"]
    dh, dw = n.attrs.get("dilation", (1, 1))
    ceil = n.attrs.get("ceil_mode", False)
    oh, ow = pool_out(x.shape[2], kh, sh, ph, dh, ceil), pool_out(x.shape[3], kw, sw, pw, dw, ceil)
    return [TensorType(x.dtype, (*x.shape[:2], oh, ow))]


def _pool_interp(n: Node, args: list[Any], bind: Any, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    x, oshape = args[0], shapes[0]
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
    return [out]


def _emit_pool(em: Any, n: Node) -> None:
    x, out, a = n.inputs[0], n.outputs[0], n.attrs
    xs, os = em.t(x).shape, em.t(out).shape
    dims = [
        xs[0] * xs[1],
        xs[2],
        xs[3],
        os[2],
        os[3],
        *a["kernel"],
        *a["stride"],
        *a["padding"],
        *a.get("dilation", (1, 1)),
        int(n.op == "max_pool2d"),
        int(a.get("count_include_pad", True)),
        int(a.get("divisor_override") or 0),
    ]
    em.w.line(f"wt_pool2d_f32({em.var(out)}, {em.var(x)}, " + ", ".join(c_dim(d) for d in dims) + ");")


def _adaptive_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x = t[0]
    return [TensorType(x.dtype, (*x.shape[:2], *n.attrs["output_size"]))]


def _adaptive_interp(n: Node, args: list[Any], bind: Any, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    x = args[0]
    N, C, H, W = x.shape
    oh, ow = shapes[0][2:]
    out = np.zeros((N, C, oh, ow), np.float32)
    for i in range(oh):
        h0, h1 = (i * H) // oh, -((-(i + 1) * H) // oh)
        for j in range(ow):
            w0, w1 = (j * W) // ow, -((-(j + 1) * W) // ow)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3), dtype=np.float64)
    return [out]


def _emit_adaptive(em: Any, n: Node) -> None:
    x, out = n.inputs[0], n.outputs[0]
    xs, os = em.t(x).shape, em.t(out).shape
    dims = [xs[0] * xs[1], xs[2], xs[3], os[2], os[3]]
    em.w.line(f"wt_adaptive_avg_pool2d_f32({em.var(out)}, {em.var(x)}, " + ", ".join(c_dim(d) for d in dims) + ");")


def _pool_flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    kh, kw = n.attrs["kernel"]
    return numel(outs[0].shape) * kh * kw


register(
    OpDef("max_pool2d", "kernel", _pool_infer, _pool_interp, _emit_pool, _pool_flops),
    OpDef("avg_pool2d", "kernel", _pool_infer, _pool_interp, _emit_pool, _pool_flops),
    OpDef(
        "adaptive_avg_pool2d",
        "kernel",
        _adaptive_infer,
        _adaptive_interp,
        _emit_adaptive,
        lambda n, i, o: numel(i[0].shape),
    ),
)
