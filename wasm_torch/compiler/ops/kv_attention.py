"""`kv_attention`: attention over a KV cache, the one stateful op (text generation, wasm_torch/generate).

    out, kc', vc' = kv_attention(q, k, v, past, kc, vc)   attrs: scale, max_context

The T new tokens are at positions past .. past+T-1 (`past`: int64, one element). Their keys and
values are written into the caches at those positions, then each query row attends causally to the
cache up to its own position — so prefill (past = 0, T = prompt length) and a decode step (T = 1)
are one op. kc' and vc' are kc and vc updated *in place* (`OpDef.inplace`): the memory plan gives
them one buffer, and when kc/vc are graph inputs that buffer keeps its contents from call to call
(the artifact lists them as `state`, docs/artifact-format.md).

Layouts (kernels/wt_kv_attention.h): q [B, T, Hq, D], k [B, T, Hkv, D], v [B, T, Hkv, Dv] ->
out [B, T, Hq, Dv]; kc [B, Hkv, D, CS] holds the keys transposed, vc [B, Hkv, CS, Dv]; CS is the
capacity rounded up to a multiple of 8, max_context <= CS the positions that may be used. Grouped-
query attention: query head h reads key/value head h // (Hq // Hkv). The frontend produces it from
`torch.ops.wasm_torch.kv_attention` (frontend/rules/kv_cache.py), whose eager implementation in
torch is the same function as `_interp` here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import GraphError
from ..codegen.ctable import literal
from ..codegen.dims import c_dim
from ..ir.graph import Node, TensorType
from ..ir.op import OpDef, register
from .norm import SOFTMAX_FLOPS_PER_ELEMENT

CACHE_ALIGN = 8  # the key cache's position stride is a multiple of this (the kernel's 8-key tiles)


def _infer(n: Node, t: list[TensorType]) -> list[TensorType]:
    if len(t) != 6:
        raise GraphError(f"kv_attention takes 6 inputs (q, k, v, past, kc, vc), got {len(t)}")
    q, k, v, past, kc, vc = t
    if any(x.dtype != "f32" for x in (q, k, v, kc, vc)) or past.dtype != "i64":
        raise GraphError(f"kv_attention: q, k, v, kc, vc must be f32 and past i64, got {[str(x) for x in t]}")
    if q.rank != 4 or k.rank != 4 or v.rank != 4 or kc.rank != 4 or vc.rank != 4 or past.shape not in ((1,), ()):
        raise GraphError(f"kv_attention: expected ranks 4, 4, 4, (1,), 4, 4, got {[str(x) for x in t]}")
    B, T, Hq, D = q.shape
    _, _, Hkv, Dv = v.shape
    CS = kc.shape[3]
    C = n.attrs.get("max_context")
    fixed = (B, Hq, D, Hkv, Dv, CS)
    if not all(isinstance(d, int) and d > 0 for d in fixed) or not isinstance(C, int):
        raise GraphError(f"kv_attention: batch, heads, head dims and cache sizes must be static, got {[str(x) for x in t]}")
    want = {"k": (B, T, Hkv, D), "v": (B, T, Hkv, Dv), "kc": (B, Hkv, D, CS), "vc": (B, Hkv, CS, Dv)}
    for name, x in zip(("k", "v", "kc", "vc"), (k, v, kc, vc), strict=True):
        if tuple(x.shape) != want[name]:
            raise GraphError(f"kv_attention: {name} is {x}, expected shape {list(want[name])}")
    if Hq % Hkv or CS % CACHE_ALIGN or not 0 < C <= CS:
        raise GraphError(
            f"kv_attention: {Hq} query heads are not a multiple of {Hkv} key/value heads, or the cache stride "
            f"{CS} is not a multiple of {CACHE_ALIGN}, or max_context={C} is outside [1, {CS}]"
        )
    return [TensorType("f32", (B, T, Hq, Dv)), kc, vc]


def _interp(n: Node, args: list[Any], bind: Any, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Write the new keys/values at past.., then causal softmax attention over the cache, in float64."""
    q, k, v, past, kc, vc = args
    B, T, Hq, D = q.shape
    Hkv, Dv = v.shape[2], v.shape[3]
    p, C = int(np.asarray(past).reshape(-1)[0]), n.attrs["max_context"]
    if not 0 <= p <= C - T:
        raise GraphError(f"kv_attention: past={p} with {T} new tokens does not fit max_context={C}")
    kc, vc = kc.copy(), vc.copy()
    kc[:, :, :, p : p + T] = k.transpose(0, 2, 3, 1)
    vc[:, :, p : p + T, :] = v.transpose(0, 2, 1, 3)
    g, L = Hq // Hkv, p + T
    qg = q.astype(np.float64).reshape(B, T, Hkv, g, D)
    s = np.einsum("btkgd,bkdl->bkgtl", qg, kc[:, :, :, :L].astype(np.float64)) * np.float32(n.attrs["scale"])
    visible = np.arange(L)[None, :] <= (p + np.arange(T))[:, None]  # (T, L)
    s = np.where(visible, s, -np.inf)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    pr = e / e.sum(axis=-1, keepdims=True)
    out = np.einsum("bkgtl,bkld->btkgd", pr, vc[:, :, :L, :].astype(np.float64))
    return [out.reshape(B, T, Hq, Dv).astype(np.float32), kc, vc]


def _emit(em: Any, n: Node) -> None:
    q, k, v, past, kc, vc = n.inputs
    B, T, Hq, D = em.t(q).shape
    Hkv, Dv = em.t(v).shape[2], em.t(v).shape[3]
    fields = {"B": B, "T": T, "Hq": Hq, "Hkv": Hkv, "D": D, "Dv": Dv, "C": n.attrs["max_context"],
              "CS": em.t(kc).shape[3]}  # fmt: skip
    init = ", ".join(f".{f} = {c_dim(x)}" for f, x in fields.items())
    em.w.line(f"{{ const wt_kv_attention_args args = {{{init}, .scale = {literal(n.attrs['scale'], 'f32')}}};")
    em.w.line(
        f"  wt_kv_attention_f32({em.var(n.outputs[0])}, {em.var(q)}, {em.var(k)}, {em.var(v)}, "
        f"{em.var(past)}, {em.var(kc)}, {em.var(vc)}, &args); }}"
    )


def _flops(n: Node, ins: list[TensorType], outs: list[TensorType]) -> Any:
    """An upper bound: every query row against max_context keys (the position is only known at run time)."""
    B, T, Hq, D = ins[0].shape
    Dv = ins[2].shape[3]
    return B * Hq * T * n.attrs["max_context"] * (2 * (D + Dv) + SOFTMAX_FLOPS_PER_ELEMENT)


register(OpDef("kv_attention", "kernel", _infer, _interp, _emit, _flops, inplace=((1, 4), (2, 5))))
