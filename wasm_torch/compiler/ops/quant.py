"""IR ops of reduced-precision weights (passes/quantize.py puts them in; docs/quantization.md):

    f16_to_f32(h)                               elementwise: IEEE halves (e.g. embedding rows) -> float
    matmul_f16(x, Wp16[, b])                    matmul_packed with half panels           (wt_gemm_f16_f32)
    conv2d_f16(x, Wp16[, b])                    conv2d_packed with half panels           (wt_conv2d_f16_f32)
    q8_rows(x) -> (q, scale, zp)                per-row 8-bit codes (q: int16 pairs)     (wt_q8_rows)
    matmul_q8(q, scale, zp, Wq, ws, wsum[, b])  int8 GEMM + dequantize, bias, activation (wt_gemm_q8_f32)
    conv2d_q8(x, Wq, ws, wsum[, b]) -> (y, scratch)    int8 implicit-GEMM conv           (wt_conv_q8.h)
    dwconv2d_q8(x, Wq, ws, wsum[, b]) -> (y, scratch)  int8 depthwise conv               (wt_conv_q8.h)

Each op's NumPy meaning is the exact integer arithmetic and float32 epilogue of its kernel
(ops/quant_format.py), so the wasm matches the reference interpreter bit for bit where no
activation function is fused (tests/compiler/quant/test_quant_kernels.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import GraphError
from ..codegen.ctable import literal
from ..codegen.dims import c_dim
from ..codegen.fused import emit_elementwise
from ..ir.graph import Dim, Node, TensorType, numel
from ..ir.op import OpDef, op_def, pool_out, register
from . import conv as conv_ops
from . import matmul as matmul_ops
from .quant_format import (
    F32,
    dequantize,
    q8_codes,
    q8_params,
    q8_range,
    quantize_rows,
    unpack_conv_q8,
    unpack_gemm_q8,
)


def _bias(args: list[Any], k: int, n: int) -> np.ndarray:
    return args[k].astype(F32) if len(args) > k and args[k] is not None else np.zeros(n, F32)


def _gemm_act(n: Node, y: np.ndarray, bind: Any) -> np.ndarray:
    act = n.attrs.get("act")
    return op_def(act).interp(Node(act, (), ()), [y], bind, [])[0] if act else y


def _rows(t: TensorType) -> Dim:
    return numel(t.shape[:-1])


# ---- fp16 -------------------------------------------------------------------------------------------
def _f16_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    if t[0].dtype != "f16":
        raise GraphError(f"f16_to_f32 reads f16, got {t[0].dtype}")
    return [TensorType("f32", t[0].shape)]


def _f16_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    return [args[0].astype(F32)]


def _f16_c(in_dtype: str, out_dtype: str, attrs: dict[str, Any]) -> str:
    return "wt_f16_to_f32({0})"


def _mm16_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    if t[1].dtype != "f16":
        raise GraphError(f"matmul_f16 weights must be f16, got {t[1].dtype}")
    return matmul_ops._packed_infer(n, t)


def _mm16_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    return matmul_ops._packed_interp(n, [args[0], args[1].astype(F32), *args[2:]], bind, shapes)


def _mm16_emit(em: Any, n: Node) -> None:
    a, wp, out = n.inputs[0], n.inputs[1], n.outputs[0]
    at = em.t(a)
    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    act = n.attrs.get("act")
    em.w.line(
        f"wt_gemm_f16_f32({em.var(out)}, {em.var(a)}, {em.var(wp)}, {em.opt(bias)}, {c_dim(_rows(at))}, "
        f"{n.attrs['n']}, {c_dim(at.shape[-1])}, {matmul_ops.GEMM_ACTS[act] if act else 0});"
    )


def _conv16_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    if t[1].dtype != "f16":
        raise GraphError(f"conv2d_f16 weights must be f16, got {t[1].dtype}")
    return _conv_out(n, t[0])[:1]


def _conv16_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    return conv_ops._packed_interp(n, [args[0], args[1].astype(F32), *args[2:]], bind, [*shapes, (0,)])[:1]


def _conv16_emit(em: Any, n: Node) -> None:
    x, wp, out = n.inputs[0], n.inputs[1], n.outputs[0]
    a = n.attrs
    bias = n.inputs[2] if len(n.inputs) > 2 else ""
    em.w.line(
        f"wt_conv2d_f16_f32({em.var(out)}, {em.var(x)}, {em.var(wp)}, {em.opt(bias)}, "
        f"{conv_ops._dims(em, n, a['kernel'], a['oc'])}, {a['groups']}, {conv_ops._act_c(n)});"
    )


# ---- int8 GEMM -------------------------------------------------------------------------------------
def _rows_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    x, kp = t[0], n.attrs["kp"]
    if x.dtype != "f32" or kp % 4 or kp < x.shape[-1]:
        raise GraphError(f"q8_rows needs f32 rows and kp a multiple of 4 >= K, got {x} kp={kp}")
    rows = _rows(x)
    return [TensorType("u8", (rows, 4 * kp)), TensorType("f32", (rows,)), TensorType("i32", (rows, 2))]


def _rows_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    """What the kernel writes: the signed codes as little-endian int16, each group of 4 stored twice;
    the scales; (zero point, sum of the codes) per row."""
    x = args[0]
    c, s, zp, csum = quantize_rows(x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1), n.attrs["kp"])
    twice = np.repeat(c.astype("<i2").reshape(c.shape[0], -1, 1, 4), 2, axis=2)
    return [np.ascontiguousarray(twice).reshape(c.shape[0], -1).view(np.uint8), s, np.stack([zp, csum], axis=1)]


def _rows_emit(em: Any, n: Node) -> None:
    x, (q, s, z) = n.inputs[0], n.outputs
    xt = em.t(x)
    em.w.line(
        f"wt_q8_rows((int16_t*){em.var(q)}, {em.var(s)}, {em.var(z)}, {em.var(x)}, {c_dim(_rows(xt))}, "
        f"{c_dim(xt.shape[-1])}, {n.attrs['kp']});"
    )


def _mm8_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    q, s, z, wp, ws, wsum = t[:6]
    a = n.attrs
    if (q.dtype, s.dtype, z.dtype, wp.dtype, ws.dtype, wsum.dtype) != ("u8", "f32", "i32", "i8", "f32", "i32"):
        raise GraphError(f"matmul_q8 operand dtypes {[x.dtype for x in t[:6]]}")
    if z.rank != 2 or z.shape[-1] != 2:
        raise GraphError(f"matmul_q8: row parameters {z} must be (rows, 2): zero point, sum of codes")
    if a.get("act") is not None and a["act"] not in matmul_ops.GEMM_ACTS:
        raise GraphError(f"matmul_q8 act={a['act']!r}: expected one of {sorted(matmul_ops.GEMM_ACTS)}")
    if q.rank != 2 or q.shape[1] != 16 * wp.shape[1] or 4 * a["k"] > q.shape[1]:
        raise GraphError(f"matmul_q8: codes {q} do not match packed weights {wp} (k={a['k']})")
    return [TensorType("f32", (q.shape[0], a["n"]))]


def _mm8_interp(n: Node, args: list[Any], bind: Any, shapes: Any) -> list[np.ndarray]:
    q, s, z, wp, ws, wsum = args[:6]
    k, cols = n.attrs["k"], n.attrs["n"]
    w = unpack_gemm_q8(wp, k, cols, n.attrs.get("wbias", 0)).astype(np.int64)
    codes = np.ascontiguousarray(q).view("<i2").reshape(q.shape[0], -1, 2, 4)[:, :, 0].reshape(q.shape[0], -1)
    acc = (codes[:, :k].astype(np.int64) @ w).astype(np.int32)  # sum c * q, exact
    corr = acc + (128 - z[:, :1].astype(np.int32)) * wsum[None, :cols]  # = sum (x - zp) * q
    y = dequantize(corr, s[:, None], ws[None, :cols], _bias(args, 6, cols)[None, :])
    return [_gemm_act(n, y, bind)]


def _mm8_emit(em: Any, n: Node) -> None:
    q, s, z, wp, ws, wsum = n.inputs[:6]
    bias = n.inputs[6] if len(n.inputs) > 6 else ""
    out, act = n.outputs[0], n.attrs.get("act")
    qt = em.t(q)
    em.w.line(
        f"wt_gemm_q8_f32({em.var(out)}, (const int16_t*){em.var(q)}, {em.var(s)}, {em.var(z)}, {em.var(wp)}, "
        f"{em.var(ws)}, {em.var(wsum)}, {em.opt(bias)}, {c_dim(qt.shape[0])}, {n.attrs['n']}, {c_dim(qt.shape[1] // 4)}, "
        f"{matmul_ops.GEMM_ACTS[act] if act else 0}, {n.attrs.get('wbias', 0)});"
    )


def _mm8_flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    return 2 * numel(outs[0].shape) * n.attrs["k"]


# ---- int8 convolution ------------------------------------------------------------------------------
def _conv_out(n: Node, x: TensorType) -> list[TensorType]:
    a = n.attrs
    conv_ops._check_act(n)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    oh = pool_out(x.shape[2], kh, sh, ph, dh, False)
    ow = pool_out(x.shape[3], kw, sw, pw, dw, False)
    return [TensorType("f32", (x.shape[0], a["oc"], oh, ow)), TensorType("u8", (a.get("scratch", 0),))]


def _conv8_infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    if (t[0].dtype, t[1].dtype, t[2].dtype, t[3].dtype) != ("f32", "i8", "f32", "i32"):
        raise GraphError(f"{n.op} operand dtypes {[x.dtype for x in t[:4]]}")
    return _conv_out(n, t[0])


def image_params(x: np.ndarray, static: tuple[float, float, int] | None) -> tuple[np.ndarray, ...]:
    """Per image (scale, inv, zp): calibrated constants, or from the image's own range."""
    if static is not None:
        s, inv, zp = static
        k = x.shape[0]
        return np.full(k, s, F32), np.full(k, inv, F32), np.full(k, zp, np.int32)
    mn, mx = q8_range(x.astype(F32), tuple(range(1, x.ndim)))
    return q8_params(mn, mx)


def _conv8_interp(n: Node, args: list[Any], bind: Any, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Codes of the input, the exact integer conv of (codes - zp) with the int8 weights (zero padding
    = the zero point), dequantized per image and output channel, then clamped."""
    x, wp, ws = args[:3]
    a = n.attrs
    oc, cg = a["oc"], x.shape[1] // a["groups"]
    scale, inv, zp = image_params(x, a.get("static"))
    b4 = (slice(None), None, None, None)
    codes = q8_codes(x, inv[b4], zp[b4]).astype(np.float64) - zp[b4]
    if n.op == "conv2d_q8":
        w = unpack_conv_q8(wp, oc, cg, a["kernel"], a.get("wbias", 0))
        wsc = unpack_channels(ws, a["groups"], oc)
    else:
        w, wsc = wp.reshape(oc, 1, *a["kernel"]), ws
    corr = conv_ops.conv2d_reference(codes, w.astype(np.float64), None, n)  # exact integers, then float32
    y = dequantize(corr, scale[b4], wsc[None, :, None, None], _bias(args, 4, oc)[None, :, None, None])
    return [conv_ops._act(y, n), np.zeros(shapes[1], np.uint8)]


def unpack_channels(v: np.ndarray, groups: int, oc: int) -> np.ndarray:
    """Inverse of quant_format.conv_channel_pad."""
    return v.reshape(groups, -1)[:, : oc // groups].reshape(-1)


def conv8_layout(x: TensorType, attrs: dict[str, Any], c4: bool) -> tuple[int, int, int]:
    """(padded H, padded W, bytes per quantized image) of a conv's input (static C, H, W)."""
    (ph, pw), groups = attrs["padding"], attrs["groups"]
    c, h, w = (int(d) for d in x.shape[1:])
    hp, wp = h + 2 * ph, w + 2 * pw
    if c4:
        return hp, wp, groups * -(-(c // groups) // 4) * hp * wp * 4
    return hp, wp, c * hp * wp


def scratch_layout(batch: Dim, img: int, slack: int) -> tuple[Dim, Dim]:
    """(offset of the per-image params in the scratch, scratch bytes): codes + slack, 16-aligned, then
    3 floats of params and 2 of range per image."""
    off = -(-(batch * img + slack) // 16) * 16 if isinstance(batch, int) else ((batch * img + slack + 15) // 16) * 16
    return off, off + 20 * batch


def _conv8_emit(em: Any, n: Node) -> None:
    x, wp, ws, wsum = n.inputs[:4]
    bias = n.inputs[4] if len(n.inputs) > 4 else ""
    out, scratch = n.outputs
    a, xt, ot = n.attrs, em.t(n.inputs[0]), em.t(n.outputs[0])
    c4 = n.op == "conv2d_q8"
    hp, wpad, img = conv8_layout(xt, a, c4)
    N, C, H, W = (c_dim(d) for d in xt.shape)
    off, _ = scratch_layout(xt.shape[0], img, a["slack"])
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    st = a.get("static")
    with em.w.block(""):
        em.w.line(f"uint8_t* const xq = {em.var(scratch)};")
        em.w.line(f"float* const qp = (float*)(xq + {c_dim(off)});")
        em.w.line(f"float* const mm = qp + 3 * {N};")
        if st is None:
            em.w.line(f"wt_q8_minmax_f32(mm, {em.var(x)}, {N}, {C} * {H} * {W});")
            scale, inv, zp, mm = "0.0f", "0.0f", "0", "mm"
        else:
            scale, inv, zp, mm = literal(st[0], "f32"), literal(st[1], "f32"), str(int(st[2])), "0"
        em.w.line(
            f"wt_q8_image_f32(xq, qp, {mm}, {scale}, {inv}, {zp}, {em.var(x)}, {N}, {C}, {H}, {W}, "
            f"{a['groups']}, {ph}, {pw}, {int(c4)}, {img}, {a['slack']});"
        )
        kernel = "wt_conv2d_q8_f32" if c4 else "wt_dwconv2d_q8_f32"
        groups = f", {a['groups']}" if c4 else ""
        wbias = f", {a.get('wbias', 0)}" if c4 else ""
        em.w.line(
            f"{kernel}({em.var(out)}, xq, qp, {em.var(wp)}, {em.var(ws)}, {em.var(wsum)}, {em.opt(bias)}, "
            f"{N}, {C}, {hp}, {wpad}, {a['oc']}, {kh}, {kw}, {c_dim(ot.shape[2])}, {c_dim(ot.shape[3])}, "
            f"{sh}, {sw}, {dh}, {dw}{groups}, {img}, {conv_ops._act_c(n)}{wbias});"
        )


def _conv_flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    kh, kw = n.attrs["kernel"]
    return 2 * numel(outs[0].shape) * (ins[0].shape[1] // n.attrs["groups"]) * kh * kw


def _numel(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    return numel(outs[0].shape)


register(
    OpDef("f16_to_f32", "elementwise", _f16_infer, _f16_interp, emit_elementwise, _numel, c_expr=_f16_c),
    OpDef("matmul_f16", "kernel", _mm16_infer, _mm16_interp, _mm16_emit, matmul_ops._matmul_flops),
    OpDef("conv2d_f16", "kernel", _conv16_infer, _conv16_interp, _conv16_emit, _conv_flops),
    OpDef("q8_rows", "kernel", _rows_infer, _rows_interp, _rows_emit, _numel),
    OpDef("matmul_q8", "kernel", _mm8_infer, _mm8_interp, _mm8_emit, _mm8_flops),
    OpDef("conv2d_q8", "kernel", _conv8_infer, _conv8_interp, _conv8_emit, _conv_flops),
    OpDef("dwconv2d_q8", "kernel", _conv8_infer, _conv8_interp, _conv8_emit, _conv_flops),
)
