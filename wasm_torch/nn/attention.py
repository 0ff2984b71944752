"""Scaled dot-product attention and multi-head attention with Q/K/V/O projections.

Attention(Q, K, V) = softmax(Q Kᵀ · s + M) V with s = 1/√d_k (Vaswani et al. 2017, "Attention Is All You
Need"). M is a mask: boolean (True = may attend) or additive float. Unlike `F.scaled_dot_product_attention`,
a query whose every key is masked returns zeros instead of NaN.

The helpers here (`masked_softmax`, `causal_mask`, `gathered_attention`) are shared by the other attention
mechanisms of `wasm_torch.nn`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._util import make_config, merge_heads, split_heads

NEG_INF = float("-inf")


def causal_mask(tq: int, tk: int, device: torch.device | None = None) -> Tensor:
    """(Tq, Tk) boolean, True where key j ≤ query i (top-left aligned, as `is_causal` in PyTorch)."""
    i = torch.arange(tq, device=device).unsqueeze(1)  # (Tq, 1)
    j = torch.arange(tk, device=device).unsqueeze(0)  # (1, Tk)
    return j <= i


def masked_softmax(scores: Tensor, keep: Tensor | None = None) -> Tensor:
    """Softmax over the last axis restricted to `keep` (True = kept); rows with nothing kept give zeros.

    Positions whose score is −inf are also treated as masked, so additive −inf masks are safe.
    """
    if keep is not None:
        scores = scores.masked_fill(~keep, NEG_INF)
    m = scores.amax(dim=-1, keepdim=True)
    m = torch.where(m == NEG_INF, torch.zeros_like(m), m)  # fully masked row: avoid (−inf) − (−inf)
    e = torch.exp(scores - m)
    z = e.sum(dim=-1, keepdim=True)
    return e / torch.where(z == 0, torch.ones_like(z), z)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """softmax(q kᵀ · scale + mask) v over the last two axes; shapes (..., Tq, D), (..., Tk, D), (..., Tk, Dv).

    `attn_mask` broadcasts to (..., Tq, Tk): bool (True = attend) or float (added to the scores).
    """
    s = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * s  # (..., Tq, Tk)
    keep: Tensor | None = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            keep = attn_mask
        else:
            scores = scores + attn_mask
    if is_causal:
        c = causal_mask(q.shape[-2], k.shape[-2], q.device)
        keep = c if keep is None else keep & c
    return torch.matmul(masked_softmax(scores, keep), v)


def gathered_attention(q: Tensor, k: Tensor, v: Tensor, idx: Tensor, valid: Tensor, scale: float) -> Tensor:
    """Attention where query i sees only keys idx[i, :] (entries with valid[i, :] False are ignored).

    q (B, H, T, D), k (B, H, Tk, D), v (B, H, Tk, Dv), idx/valid (T, K). Cost O(T·K) instead of O(T·Tk).
    """
    kg = k[:, :, idx]  # (B, H, T, K, D)
    vg = v[:, :, idx]  # (B, H, T, K, Dv)
    scores = torch.matmul(q.unsqueeze(-2), kg.transpose(-2, -1)).squeeze(-2) * scale  # (B, H, T, K)
    p = masked_softmax(scores, valid)
    return torch.matmul(p.unsqueeze(-2), vg).squeeze(-2)  # (B, H, T, Dv)


@dataclass(frozen=True)
class SDPAConfig:
    causal: bool = False
    scale: float | None = None  # None → 1/√d


class ScaledDotProductAttention(nn.Module):
    """Module form of `scaled_dot_product_attention` (no parameters). Inputs (B, [H,] T, D)."""

    def __init__(self, config: SDPAConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = make_config(SDPAConfig, config, overrides)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        return scaled_dot_product_attention(q, k, v, attn_mask, self.config.causal, self.config.scale)


@dataclass(frozen=True)
class MultiHeadConfig:
    dim: int = 64
    heads: int = 4
    bias: bool = True
    causal: bool = False

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")


class MultiHeadAttention(nn.Module):
    """Multi-head attention with learned projections (Vaswani et al. 2017).

    head_h = Attention(X_q W_Qʰ, X_k W_Kʰ, X_v W_Vʰ) with scale 1/√(d/H); out = concat_h(head_h) W_O.
    Inputs (B, T, D); `key_mask` (B, Tk) bool with True = real key (False = padding).
    """

    def __init__(self, config: MultiHeadConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = make_config(MultiHeadConfig, config, overrides)
        self.q_proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.bias)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.bias)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        attn_mask: Tensor | None = None,
        key_mask: Tensor | None = None,
    ) -> Tensor:
        key = query if key is None else key
        value = key if value is None else value
        h = self.config.heads
        q = split_heads(self.q_proj(query), h)  # (B, H, Tq, Dh)
        k = split_heads(self.k_proj(key), h)  # (B, H, Tk, Dh)
        v = split_heads(self.v_proj(value), h)  # (B, H, Tk, Dh)
        mask = attn_mask
        if key_mask is not None:
            km = key_mask[:, None, None, :]  # (B, 1, 1, Tk)
            if mask is None:
                mask = km
            elif mask.dtype == torch.bool:
                mask = mask & km
            else:
                mask = mask.masked_fill(~km, NEG_INF)
        out = scaled_dot_product_attention(q, k, v, mask, self.config.causal)  # (B, H, Tq, Dh)
        return self.o_proj(merge_heads(out))  # (B, Tq, D)
