"""Fused attention: softmax(q kᵀ · scale + mask [+ causal]) v on strided views (passes/fuse_attention.py),
one flash-style kernel call (kernels/wt_attention.h, online softmax, no Lq×Lk buffer)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import GraphError
from ..codegen.ctable import literal
from ..codegen.dims import c_dim
from ..ir.graph import Node, TensorType, evaluate_dim
from ..ir.op import OpDef, register
from .norm import SOFTMAX_FLOPS_PER_ELEMENT


def _infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    """attention(q, k, v[, mask]): inputs are the buffers the operands are read from (strided views in
    attrs q/k/v/mask); the output has shape attrs["out_shape"]."""
    if len(t) not in (3, 4) or any(x.dtype != "f32" for x in t):
        raise GraphError(f"attention takes 3 or 4 f32 inputs (q, k, v[, mask]), got {[str(x) for x in t]}")
    if len(n.attrs["dims"]) != 6 or (len(t) == 4) != ("mask" in n.attrs):
        raise GraphError("attention attrs: dims=(B, H, Lq, Lk, D, Dv) and a mask view iff a mask input")
    return [TensorType("f32", tuple(n.attrs["out_shape"]))]


def _strided(buf: np.ndarray, spec: tuple, shape: tuple[int, ...], bind: dict) -> np.ndarray:
    """The logical (B, H, L, D) tensor an attention operand reads: element offset + strides into buf."""
    off, *strides = (evaluate_dim(s, bind) for s in spec)
    flat = buf.reshape(-1)
    return np.lib.stride_tricks.as_strided(flat[off:], shape, [s * flat.itemsize for s in strides])


def _interp(n: Node, args: list[Any], bind: Any, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Per (batch, head), in float64. A row whose scores are all -inf gives NaN like torch.softmax,
    or 0 when attrs["safe"] (the `_safe_softmax` of torch's scaled_dot_product_attention)."""
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
    out = np.zeros(shapes[0], np.float32)
    _strided(out, a["out"] + (1,), (B, H, Lq, Dv), bind)[...] = np.matmul(p, v)
    return [out]


def _emit(em: Any, n: Node) -> None:
    """wt_attention_f32 on strided views: offsets go into the pointers."""
    a, (q, k, v), mask = n.attrs, n.inputs[:3], (n.inputs[3] if len(n.inputs) > 3 else "")
    ptr = lambda val, spec: f"{em.var(val)} + {c_dim(spec[0])}"  # noqa: E731
    views = [("q", a["q"]), ("k", a["k"]), ("v", a["v"]), ("o", a["out"])]
    fields = [*zip(("B", "H", "Lq", "Lk", "D", "Dv"), a["dims"], strict=True)]
    for p, spec in views:
        fields += [(f"{p}_{s}", x) for s, x in zip(("sb", "sh", "sl"), spec[1:], strict=True)]
    if mask:
        fields += [*zip(("m_sb", "m_sh", "m_sq", "m_sk"), a["mask"][1:], strict=True)]
    init = ", ".join(f".{f} = {c_dim(x)}" for f, x in fields)
    init += f", .scale = {literal(a['scale'], 'f32')}, .causal = {int(a['causal'])}"
    init += f", .safe = {int(a['safe'])}"
    em.w.line(f"{{ const wt_attention_args args = {{{init}}};")
    em.w.line(
        f"  wt_attention_f32({ptr(n.outputs[0], a['out'])}, {ptr(q, a['q'])}, {ptr(k, a['k'])}, "
        f"{ptr(v, a['v'])}, {ptr(mask, a['mask']) if mask else '0'}, &args); }}"
    )


def _flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    """Both products (2·Lq·Lk·(D + Dv) per head) and the softmax over the scores (causal skipping
    is not subtracted: the unit must not depend on how well a kernel exploits the mask)."""
    B, H, Lq, Lk, D, Dv = n.attrs["dims"]
    return B * H * Lq * Lk * (2 * (D + Dv) + SOFTMAX_FLOPS_PER_ELEMENT)


register(OpDef("attention", "kernel", _infer, _interp, _emit, _flops))
