"""2-D resize (F.interpolate, nn.Upsample): nearest, nearest-exact and bilinear (with and without
align_corners; from an output size or scale factors), one call of `wt_resize2d_f32`
(kernels/wt_resize.h). 1-D interpolation is lowered onto it with a height of 1.

Attrs: `mode` ("nearest" | "nearest_exact" | "bilinear"), `align_corners`, `size` (OH, OW) and
`scales` (the scale factors the user gave, or None per axis): like torch, a given factor sets the
source-index step to 1/factor even when the output size was rounded down.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import GraphError
from ..codegen.ctable import literal
from ..codegen.dims import c_dim
from ..ir.graph import Node, TensorType, numel
from ..ir.op import OpDef, register

MODES = {"nearest": 0, "nearest_exact": 1, "bilinear": 2}


def axis_scale(in_size: int, out_size: int, align_corners: bool, factor: float | None, mode: str) -> np.float32:
    """torch's `area_pixel_compute_scale` / `compute_scales_value`, in float32 like its CPU kernels."""
    if mode == "bilinear" and align_corners:
        return np.float32(np.float32(in_size - 1) / np.float32(out_size - 1)) if out_size > 1 else np.float32(0)
    if factor is not None and factor > 0:
        return np.float32(1.0 / factor)
    return np.float32(np.float32(in_size) / np.float32(out_size))


def nearest_index(out_size: int, in_size: int, scale: np.float32, exact: bool) -> np.ndarray:
    dst = np.arange(out_size)
    if not exact and out_size == in_size:
        return dst
    if not exact and out_size == 2 * in_size:
        return dst >> 1
    pos = (dst.astype(np.float32) + np.float32(0.5)) * scale if exact else dst.astype(np.float32) * scale
    return np.minimum(np.floor(pos).astype(np.int64), in_size - 1)


def linear_index(out_size: int, in_size: int, scale: np.float32, align_corners: bool):
    dst = np.arange(out_size).astype(np.float32)
    src = scale * dst if align_corners else scale * (dst + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0))
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    i1 = i0 + (i0 < in_size - 1)
    l1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    return i0, i1, l1


def _check(n: Node) -> None:
    a = n.attrs
    if a["mode"] not in MODES:
        raise GraphError(f"resize2d mode={a['mode']!r}: expected one of {sorted(MODES)}")
    if len(a["size"]) != 2 or len(a["scales"]) != 2:
        raise GraphError("resize2d attrs: size=(OH, OW), scales=(sh | None, sw | None)")


def _infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    _check(n)
    x = t[0]
    if x.rank != 4 or x.dtype != "f32":
        raise GraphError(f"resize2d takes an f32 NCHW tensor, got {x}")
    oh, ow = n.attrs["size"]
    return [TensorType("f32", (x.shape[0], x.shape[1], oh, ow)), TensorType("i32", (3 * ow,))]


def resize_reference(x: np.ndarray, n: Node) -> np.ndarray:
    """The meaning, in float64 from torch's float32 indices and weights."""
    a = n.attrs
    (H, W), (OH, OW) = x.shape[2:], a["size"]
    sh = axis_scale(H, OH, a["align_corners"], a["scales"][0], a["mode"])
    sw = axis_scale(W, OW, a["align_corners"], a["scales"][1], a["mode"])
    if a["mode"] != "bilinear":
        exact = a["mode"] == "nearest_exact"
        return x[:, :, nearest_index(OH, H, sh, exact)][:, :, :, nearest_index(OW, W, sw, exact)]
    h0, h1, lh = linear_index(OH, H, sh, a["align_corners"])
    w0, w1, lw = linear_index(OW, W, sw, a["align_corners"])
    x64 = x.astype(np.float64)
    lh, lw = lh.astype(np.float64)[:, None], lw.astype(np.float64)[None, :]
    top = x64[:, :, h0][:, :, :, w0] * (1 - lw) + x64[:, :, h0][:, :, :, w1] * lw
    bot = x64[:, :, h1][:, :, :, w0] * (1 - lw) + x64[:, :, h1][:, :, :, w1] * lw
    return (top * (1 - lh) + bot * lh).astype(np.float32)


def _interp(n: Node, args: list[Any], bind: Any, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    return [resize_reference(args[0], n), np.zeros(shapes[1], np.int32)]


def _emit(em: Any, n: Node) -> None:
    x, (out, scratch), a = n.inputs[0], n.outputs, n.attrs
    N, C, H, W = em.t(x).shape
    OH, OW = a["size"]
    if not all(isinstance(d, int) for d in (H, W, OH, OW)):
        raise GraphError("resize2d needs static spatial sizes")
    sh = axis_scale(H, OH, a["align_corners"], a["scales"][0], a["mode"])
    sw = axis_scale(W, OW, a["align_corners"], a["scales"][1], a["mode"])
    dims = ", ".join(c_dim(d) for d in (N * C, H, W, OH, OW))
    em.w.line(
        f"wt_resize2d_f32({em.var(out)}, {em.var(x)}, {dims}, {MODES[a['mode']]}, {int(a['align_corners'])}, "
        f"{literal(float(sh), 'f32')}, {literal(float(sw), 'f32')}, {em.var(scratch)});"
    )


def _flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    per = 7 if n.attrs["mode"] == "bilinear" else 1
    return per * numel(outs[0].shape)


register(OpDef("resize2d", "kernel", _infer, _interp, _emit, _flops))

