"""The reduced-precision formats in NumPy: weight quantization and packing (what passes/quantize.py
writes into weights.bin), and the exact reference of what the kernels compute (what the IR ops
mean, ops/quant.py). The C side is kernels/wt_f16.h, wt_q8.h and wt_conv_q8.h; docs/quantization.md
describes both.

Every function here that the kernels mirror is written in float32 arithmetic in the kernels'
order, so the reference and the wasm agree bit for bit (tests/compiler/quant/test_quant_kernels.py):
  - weights: symmetric per output channel (per row of an embedding table), 8 bits: q = rint(w / s) in
    [-127, 127], s = max|w| / 127. GEMM and conv weights of an artifact that has a relaxed-SIMD build
    are 7-bit instead, q in [-63, 63], s = max|w| / 63, packed as q + 64 (in [1, 127]: the unsigned
    7-bit operand i32x4.relaxed_dot_i8x16_i7x16_add_s needs to give the same result on every engine);
  - activations: 8 bits, asymmetric, per GEMM row (token) or per conv image, over [mn, mx] ∋ 0:
        inv = 255 / (mx - mn), scale = (mx - mn) / 255, zp = clamp(rint(-mn * inv), 0, 255),
        x = clamp(rint(a * inv) + zp, 0, 255); GEMM and conv store c = x - 128 (signed bytes);
  - y = float32(sum c·q + (128 - zp) · wsum) * (wscale * scale) + bias: the exact integer dot product
    of (x - zp) and q, whatever instructions summed it.
"""

from __future__ import annotations

import numpy as np

F16_MAX = 65504.0  # the largest finite IEEE half
Q8_PANEL = 16  # GEMM columns per panel: = WT_Q8_NR in kernels/wt_q8.h
W7 = 63  # |q| of 7-bit weights (GEMM, conv)
W8 = 127  # |q| of 8-bit weights (depthwise, embeddings)
W7_BIAS = 64  # 7-bit weights are packed as q + 64: = WT_Q8_WBIAS in kernels/wt_q8.h
LEVELS = 255  # activation codes 0..255
F32 = np.float32


def ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


# ---- weights ----------------------------------------------------------------------------------------
def quantize_channels(w: np.ndarray, axis: int, qmax: int = W8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per channel along `axis`, |q| <= qmax (W7 or W8): (q int8 like w, scale float32 per
    channel). A channel of zeros gets scale 0 and codes 0."""
    w64 = w.astype(np.float64)
    other = tuple(a for a in range(w.ndim) if a != axis)
    amax = np.abs(w64).max(axis=other) if w.size else np.zeros(w.shape[axis])
    scale = (amax / qmax).astype(F32)
    shape = [1] * w.ndim
    shape[axis] = -1
    s = scale.astype(np.float64).reshape(shape)
    q = np.where(s > 0, np.rint(w64 / np.where(s > 0, s, 1.0)), 0.0)
    return np.clip(q, -qmax, qmax).astype(np.int8), scale


def pack_gemm_q8(q: np.ndarray, wbias: int = 0) -> np.ndarray:
    """(K, N) codes -> (panels, K/4 groups, 64) of q + wbias: panel p, group g, byte 16j + 4c + t
    = W[4g + t][16p + 4j + c] + wbias (wbias, i.e. 0, past N and K). wbias: 0, or W7_BIAS for 7-bit q."""
    k, n = q.shape
    kp, p = ceil_to(max(k, 1), 4), -(-n // Q8_PANEL)
    padded = np.zeros((kp, p * Q8_PANEL), np.int8)
    padded[:k, :n] = q
    # (g, t, p, j, c) -> (p, g, j, c, t)
    x = padded.reshape(kp // 4, 4, p, 4, 4).transpose(2, 0, 3, 4, 1).reshape(p, kp // 4, 64)
    return np.ascontiguousarray(x + np.int8(wbias))


def unpack_gemm_q8(wp: np.ndarray, k: int, n: int, wbias: int = 0) -> np.ndarray:
    p, g, _ = wp.shape
    q = (wp - np.int8(wbias)).astype(np.int8)
    return q.reshape(p, g, 4, 4, 4).transpose(1, 4, 0, 2, 3).reshape(g * 4, p * Q8_PANEL)[:k, :n]


def pad_to(v: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, v.dtype)
    out[: v.size] = v
    return out


def conv_quads(cg: int) -> int:
    return -(-cg // 4)


def pack_conv_q8(q: np.ndarray, groups: int, wbias: int = 0) -> np.ndarray:
    """(OC, cg, KH, KW) codes -> (groups, ceil(ocg/4), G, 16) of q + wbias, with G = ceil(cg/4)·KH·KW
    k groups in the order (quad, kh, kw): panel b, group t, byte 4r + i = W[4b + r][4·quad + i][kh][kw]
    + wbias (wbias, i.e. 0, past ocg and cg)."""
    oc, cg, kh, kw = q.shape
    ocg, quads = oc // groups, conv_quads(cg)
    panels = -(-ocg // 4)
    padded = np.zeros((groups, panels * 4, quads * 4, kh, kw), np.int8)
    padded[:, :ocg, :cg] = q.reshape(groups, ocg, cg, kh, kw)
    # (grp, b, r, quad, i, kh, kw) -> (grp, b, quad, kh, kw, r, i)
    x = padded.reshape(groups, panels, 4, quads, 4, kh, kw).transpose(0, 1, 3, 5, 6, 2, 4)
    return np.ascontiguousarray(x.reshape(groups, panels, quads * kh * kw, 16) + np.int8(wbias))


def unpack_conv_q8(wp: np.ndarray, oc: int, cg: int, kernel: tuple[int, int], wbias: int = 0) -> np.ndarray:
    groups, panels, _, _ = wp.shape
    kh, kw = kernel
    quads = conv_quads(cg)
    q = (wp - np.int8(wbias)).astype(np.int8)
    x = q.reshape(groups, panels, quads, kh, kw, 4, 4).transpose(0, 1, 5, 2, 6, 3, 4)
    return x.reshape(groups, panels * 4, quads * 4, kh, kw)[:, : oc // groups, :cg].reshape(oc, cg, kh, kw)


def conv_channel_pad(v: np.ndarray, groups: int) -> np.ndarray:
    """A per-output-channel vector laid out per group in panels of 4: (groups · ceil(ocg/4) · 4,)."""
    ocg = v.size // groups
    panels = -(-ocg // 4)
    out = np.zeros((groups, panels * 4), v.dtype)
    out[:, :ocg] = v.reshape(groups, ocg)
    return out.reshape(-1)


def to_f16(w: np.ndarray) -> np.ndarray | None:
    """w as IEEE halves (round to nearest even), or None when a value is not finite or too large for one."""
    if w.size and (not np.all(np.isfinite(w)) or np.abs(w).max() > F16_MAX):
        return None
    return w.astype(np.float16)


# ---- activations ------------------------------------------------------------------------------------
def q8_params(mn: np.ndarray, mx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scale, inv, zp) of ranges [mn, mx] (each containing 0), float32 as wt_q8_params computes them.
    An empty range gives scale 0; a range that is not finite gives scale NaN (the outputs are NaN)."""
    mn, mx = np.asarray(mn, F32), np.asarray(mx, F32)
    with np.errstate(all="ignore"):
        rng = (mx - mn).astype(F32)
        ok = (rng > 0) & np.isfinite(rng)
        safe = np.where(ok, rng, F32(1))
        inv = np.where(ok, F32(LEVELS) / safe, F32(0)).astype(F32)
        scale = np.where(ok, safe / F32(LEVELS), np.where(rng == 0, F32(0), F32(np.nan))).astype(F32)
        z = np.rint((-mn * inv).astype(F32))
        zp = np.where(ok, np.clip(np.nan_to_num(z), 0, LEVELS), 0).astype(np.int32)
    return scale, inv, zp


def q8_codes(x: np.ndarray, inv: np.ndarray, zp: np.ndarray) -> np.ndarray:
    """clamp(rint(x · inv) + zp, 0, 255) with inv, zp broadcast against x, as uint8; NaN codes as 0 + zp
    (i32x4.trunc_sat_f32x4 maps NaN to 0)."""
    with np.errstate(all="ignore"):
        t = np.rint((x.astype(F32) * inv.astype(F32)).astype(F32))
    t = np.where(np.isnan(t), 0, t)
    return np.clip(t + zp, 0, LEVELS).astype(np.uint8)


def q8_range(x: np.ndarray, axis: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """min(0, min x) and max(0, max x) over `axis`, NaN-propagating like f32x4.min / max."""
    if x.size == 0:
        shape = [d for a, d in enumerate(x.shape) if a not in axis]
        return np.zeros(shape, F32), np.zeros(shape, F32)
    return np.minimum(x.min(axis=axis), F32(0)).astype(F32), np.maximum(x.max(axis=axis), F32(0)).astype(F32)


def quantize_rows(a: np.ndarray, kp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """wt_q8_rows: (rows, K) floats -> signed codes c = x - 128 (rows, kp) int16, 0 past K; scale,
    zp and sum of c per row."""
    a = a.astype(F32)
    mn, mx = q8_range(a, (1,))
    scale, inv, zp = q8_params(mn, mx)
    c = np.zeros((a.shape[0], kp), np.int16)
    c[:, : a.shape[1]] = q8_codes(a, inv[:, None], zp[:, None]).astype(np.int16) - 128
    return c, scale, zp, c.astype(np.int32).sum(axis=1, dtype=np.int32)


def dequantize(corr: np.ndarray, xscale: np.ndarray, wscale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """float32(corr) * (wscale * xscale) + bias, in float32, in the kernels' order (corr: exact int sums)."""
    with np.errstate(all="ignore"):
        s = (wscale.astype(F32) * xscale.astype(F32)).astype(F32)
        return ((corr.astype(F32) * s).astype(F32) + bias.astype(F32)).astype(F32)
