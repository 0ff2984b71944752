"""2-D convolution: `conv2d` (reference direct kernel), `conv2d_packed` (weights in GEMM panels,
implicit im2col; passes/pack_conv.py) and `dwconv2d` (depthwise), each with an optional fused
clamp epilogue (relu / relu6, set by passes/conv_bn.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import GraphError
from ..codegen.ctable import literal
from ..codegen.dims import c_dim
from ..ir.graph import Dim, Node, TensorType, numel
from ..ir.op import OpDef, pool_out, register

# A conv's fused epilogue (attr "act", set by passes/conv_bn.py): the clamp bounds it applies.
CONV_ACTS: dict[str, tuple[float, float]] = {"relu": (0.0, float("inf")), "relu6": (0.0, 6.0)}


def _check_act(n: Node) -> None:
    if n.attrs.get("act") is not None and n.attrs["act"] not in CONV_ACTS:
        raise GraphError(f"{n.op} act={n.attrs['act']!r}: expected one of {sorted(CONV_ACTS)}")


def _conv_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    _check_act(n)
    x, w = t[0], t[1]
    (sh, sw), (ph, pw), (dh, dw) = n.attrs["stride"], n.attrs["padding"], n.attrs["dilation"]
    oh = pool_out(x.shape[2], w.shape[2], sh, ph, dh, False)
    ow = pool_out(x.shape[3], w.shape[3], sw, pw, dw, False)
    return [TensorType(x.dtype, (x.shape[0], w.shape[0], oh, ow))]


def _packed_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    """conv2d with weights in GEMM panels (passes/pack_conv.py); 2nd output: the kernel's scratch."""
    _check_act(n)
    x, a = t[0], n.attrs
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    oh = pool_out(x.shape[2], kh, sh, ph, dh, False)
    ow = pool_out(x.shape[3], kw, sw, pw, dw, False)
    return [TensorType(x.dtype, (x.shape[0], a["oc"], oh, ow)), TensorType("f32", (a["scratch"],))]


def _dw_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    """Depthwise conv2d (passes/pack_conv.py); 2nd output: the kernel's padded-plane scratch."""
    return [_conv_infer(n, t)[0], TensorType("f32", (n.attrs["scratch"],))]


def conv2d_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, n: Node) -> np.ndarray:
    """Direct convolution in float64 (groups, stride, padding, dilation), rounded once to float32."""
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


def _act(y: np.ndarray, n: Node) -> np.ndarray:
    """The fused epilogue: clamp to the act's bounds (NaN stays NaN, like torch)."""
    if not n.attrs.get("act"):
        return y
    lo, hi = CONV_ACTS[n.attrs["act"]]
    return np.clip(y, np.float32(lo), np.float32(hi)).astype(np.float32)


def _bias(args: list[Any]) -> np.ndarray | None:
    return args[2] if len(args) > 2 else None


def _conv_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    return [_act(conv2d_reference(args[0], args[1], _bias(args), n), n)]


def _dw_interp(n: Node, args: list[Any], bind: Any, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    y = _act(conv2d_reference(args[0], args[1], _bias(args), n), n)
    return [y, np.zeros(shapes[1], np.float32)]


def _packed_interp(n: Node, args: list[Any], bind: Any, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Weights in panels (groups, panels, K, MR); see passes/pack_conv.py."""
    wp, oc = args[1], n.attrs["oc"]
    w = wp.transpose(0, 1, 3, 2).reshape(wp.shape[0], -1, wp.shape[2])[:, : oc // wp.shape[0]]
    w = w.reshape(oc, -1, *n.attrs["kernel"])
    y = _act(conv2d_reference(args[0], w, _bias(args), n), n)
    return [y, np.zeros(shapes[1], np.float32)]


# ---- C ------------------------------------------------------------------------------------------
def _dims(em: Any, n: Node, kernel: tuple[Dim, Dim], oc: Dim) -> str:
    a, xs, os = n.attrs, em.t(n.inputs[0]).shape, em.t(n.outputs[0]).shape
    return ", ".join(c_dim(d) for d in [*xs, oc, *kernel, os[2], os[3], *a["stride"], *a["padding"], *a["dilation"]])


def _act_c(n: Node) -> str:
    lo, hi = CONV_ACTS[n.attrs["act"]] if n.attrs.get("act") else (-math.inf, math.inf)
    return f"{literal(lo, 'f32')}, {literal(hi, 'f32')}"


def _emit_conv(em: Any, n: Node) -> None:
    """The reference direct kernel: constant float weights were rewritten by passes/pack_conv.py."""
    x, wt, out = n.inputs[0], n.inputs[1], n.outputs[0]
    ws = em.t(wt).shape
    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    em.w.line(
        f"wt_conv2d_f32({em.var(out)}, {em.var(x)}, {em.var(wt)}, {em.opt(bias)}, "
        f"{_dims(em, n, (ws[2], ws[3]), ws[0])}, {n.attrs['groups']}, {_act_c(n)});"
    )


def _emit_dw(em: Any, n: Node) -> None:
    x, wt, (out, scratch) = n.inputs[0], n.inputs[1], n.outputs
    ws = em.t(wt).shape
    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    em.w.line(
        f"wt_dwconv2d_f32({em.var(out)}, {em.var(x)}, {em.var(wt)}, {em.opt(bias)}, "
        f"{em.var(scratch)}, {c_dim(n.attrs['scratch'])}, {_dims(em, n, (ws[2], ws[3]), ws[0])}, {_act_c(n)});"
    )


def _emit_packed(em: Any, n: Node) -> None:
    x, wp, (out, scratch) = n.inputs[0], n.inputs[1], n.outputs
    a = n.attrs
    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    em.w.line(
        f"wt_conv2d_packed_f32({em.var(out)}, {em.var(x)}, {em.var(wp)}, {em.opt(bias)}, "
        f"{em.var(scratch)}, {a['scratch']}, {_dims(em, n, a['kernel'], a['oc'])}, {a['groups']}, {_act_c(n)});"
    )


def _flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    """2 · output elements · (input channels per group) · kernel area."""
    x, y = ins[0], outs[0]
    kh, kw = n.attrs["kernel"] if "kernel" in n.attrs else ins[1].shape[2:]
    groups = n.attrs.get("groups", x.shape[1])  # depthwise: one input channel per group
    return 2 * numel(y.shape) * (x.shape[1] // groups) * kh * kw


register(
    OpDef("conv2d", "kernel", _conv_infer, _conv_interp, _emit_conv, _flops),
    OpDef("conv2d_packed", "kernel", _packed_infer, _packed_interp, _emit_packed, _flops),
    OpDef("dwconv2d", "kernel", _dw_infer, _dw_interp, _emit_dw, _flops),
)
