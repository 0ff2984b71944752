"""Transposed 2-D convolution (nn.ConvTranspose2d; ConvTranspose1d is lowered onto it with a height
of 1): stride, padding, output_padding, dilation and groups; one call of `wt_conv_transpose2d_f32`
(kernels/wt_conv_transpose.h). Weights are (IC, OC/groups, KH, KW) as torch stores them.

Attrs: `stride`, `padding`, `dilation` (pairs), `output_padding` (pair), `groups`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import GraphError
from ..codegen.dims import c_dim
from ..ir.graph import Dim, Node, TensorType, dim, numel
from ..ir.op import OpDef, register


def out_size(size: Dim, k: int, s: int, p: int, d: int, op: int) -> Dim:
    return dim((size - 1) * s - 2 * p + d * (k - 1) + op + 1)


def _infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x, w = t[0], t[1]
    a = n.attrs
    if x.rank != 4 or w.rank != 4 or x.dtype != "f32" or w.dtype != "f32":
        raise GraphError(f"conv_transpose2d takes f32 NCHW input and (IC, OC/g, KH, KW) weights, got {x}, {w}")
    g = a["groups"]
    (sh, sw), (ph, pw), (dh, dw), (oph, opw) = a["stride"], a["padding"], a["dilation"], a["output_padding"]
    if oph >= max(sh, dh) or opw >= max(sw, dw):
        raise GraphError("conv_transpose2d: output_padding must be smaller than stride or dilation")
    oh = out_size(x.shape[2], w.shape[2], sh, ph, dh, oph)
    ow = out_size(x.shape[3], w.shape[3], sw, pw, dw, opw)
    return [TensorType("f32", (x.shape[0], w.shape[1] * g, oh, ow))]


def conv_transpose2d_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, n: Node, oshape) -> np.ndarray:
    """Scatter form in float64: every input pixel adds x * w into the output window it maps to."""
    a = n.attrs
    (sh, sw), (ph, pw), (dh, dw), g = a["stride"], a["padding"], a["dilation"], a["groups"]
    N, IC, H, W = x.shape
    _, ocg, KH, KW = w.shape
    OH, OW = oshape[2], oshape[3]
    icg = IC // g
    # a padded canvas that holds every tap, cropped at the end
    full_h = (H - 1) * sh + dh * (KH - 1) + 1
    full_w = (W - 1) * sw + dw * (KW - 1) + 1
    canvas = np.zeros((N, ocg * g, max(full_h, OH + ph), max(full_w, OW + pw)), np.float64)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    for gi in range(g):
        xs = x64[:, gi * icg : (gi + 1) * icg]
        ws = w64[gi * icg : (gi + 1) * icg]  # (icg, ocg, KH, KW)
        for kh in range(KH):
            for kw in range(KW):
                contrib = np.einsum("nchw,co->nohw", xs, ws[:, :, kh, kw])
                canvas[
                    :, gi * ocg : (gi + 1) * ocg, kh * dh : kh * dh + sh * (H - 1) + 1 : sh, kw * dw : kw * dw + sw * (W - 1) + 1 : sw
                ] += contrib
    out = canvas[:, :, ph : ph + OH, pw : pw + OW]
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return out.astype(np.float32)


def _interp(n: Node, args: list[Any], bind: Any, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    b = args[2] if len(args) > 2 else None
    return [conv_transpose2d_reference(args[0], args[1], b, n, shapes[0])]


def _emit(em: Any, n: Node) -> None:
    x, w, out = n.inputs[0], n.inputs[1], n.outputs[0]
    a = n.attrs
    xs, ws, os = em.t(x).shape, em.t(w).shape, em.t(out).shape
    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    dims = [*xs, os[1], ws[2], ws[3], os[2], os[3], *a["stride"], *a["padding"], *a["dilation"], a["groups"]]
    em.w.line(
        f"wt_conv_transpose2d_f32({em.var(out)}, {em.var(x)}, {em.var(w)}, {em.opt(bias)}, "
        + ", ".join(c_dim(d) for d in dims)
        + ");"
    )


def _flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    x, w = ins[0], ins[1]
    return 2 * numel(x.shape) * w.shape[1] * w.shape[2] * w.shape[3]


register(OpDef("conv_transpose2d", "kernel", _infer, _interp, _emit, _flops))
