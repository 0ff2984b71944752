"""`torch.ops.wasm_torch.kv_attention`: the PyTorch face of the IR op `kv_attention` (ops/kv_attention.py).

A decoder traced for generation (wasm_torch/generate/trace.py) calls this op in every attention layer
instead of its own softmax(QKᵀ)V; torch.export keeps it as one node, and the rule below lowers it to
the IR op. Its eager implementation is the op's meaning in plain torch, a pure function:

    out, k_cache', v_cache' = kv_attention(q, k, v, past, k_cache, v_cache, scale, max_context)

q [B, T, Hq, D], k [B, T, Hkv, D], v [B, T, Hkv, Dv] for the T new tokens at positions past ..
past+T-1 (`past`: int64 of one element); k_cache [B, Hkv, D, CS] (keys transposed), v_cache
[B, Hkv, CS, Dv]. Returns the attention output [B, T, Hq, Dv] and the caches with the new keys and
values written at those positions (copies here; in place in the compiled module).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ....errors import UnsupportedOpError
from ..aten import TABLE
from ..context import Lowering

OP = "wasm_torch::kv_attention"


@torch.library.custom_op(OP, mutates_args=())
def kv_attention(
    q: Tensor, k: Tensor, v: Tensor, past: Tensor, k_cache: Tensor, v_cache: Tensor, scale: float, max_context: int
) -> tuple[Tensor, Tensor, Tensor]:
    T, Hq = q.shape[1], q.shape[2]
    Hkv = k.shape[2]
    p = int(past.reshape(-1)[0])
    if not 0 <= p <= max_context - T:
        raise ValueError(f"kv_attention: past={p} with {T} new tokens does not fit max_context={max_context}")
    k_cache, v_cache = k_cache.clone(), v_cache.clone()
    k_cache[:, :, :, p : p + T] = k.permute(0, 2, 3, 1)
    v_cache[:, :, p : p + T, :] = v.permute(0, 2, 1, 3)
    g, L = Hq // Hkv, p + T
    keys = k_cache[:, :, :, :L].repeat_interleave(g, dim=1)  # [B, Hq, D, L]
    values = v_cache[:, :, :L, :].repeat_interleave(g, dim=1)  # [B, Hq, L, Dv]
    s = (q.permute(0, 2, 1, 3) @ keys) * scale  # [B, Hq, T, L]
    visible = torch.arange(L)[None, :] <= (p + torch.arange(T))[:, None]
    s = s.masked_fill(~visible, float("-inf"))
    out = s.softmax(-1) @ values  # [B, Hq, T, Dv]
    return out.permute(0, 2, 1, 3).contiguous(), k_cache, v_cache


@kv_attention.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, past: Tensor, k_cache: Tensor, v_cache: Tensor, scale: float,
      max_context: int) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    out = q.new_empty((*q.shape[:3], v.shape[3]))
    return out, k_cache.new_empty(k_cache.shape), v_cache.new_empty(v_cache.shape)


def _lower(L: Lowering, fx: torch.fx.Node) -> list[str]:
    q, k, v, past, kc, vc, scale, max_context = fx.args
    names = [L.value(x) for x in (q, k, v, past, kc, vc)]
    if L.type_of(names[3]).dtype != "i64":
        raise UnsupportedOpError("wasm_torch.kv_attention: past must be an int64 tensor of one element")
    return L.emit("kv_attention", names, {"scale": float(scale), "max_context": int(max_context)}, n_out=3)


TABLE["wasm_torch.kv_attention.default"] = _lower
