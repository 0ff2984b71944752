"""Flash attention: exact attention computed tile by tile with an online softmax.

For each query tile Q_i and key/value tiles (K_j, V_j) in order (Dao et al. 2022, "FlashAttention: Fast and
Memory-Efficient Exact Attention with IO-Awareness"; Milakov & Gimelshein 2018, "Online normalizer calculation
for softmax"):

    S = Q_i K_jᵀ · s,   m' = max(m, rowmax S),   P = exp(S − m'),
    ℓ' = e^{m−m'} ℓ + rowsum P,   O' = e^{m−m'} O + P V_j,

and finally O = O / ℓ, LSE = m + log ℓ. The result equals softmax(QKᵀs)V exactly (up to rounding) while never
materialising the (T × T) score matrix. Causal masking is per position (key j ≤ query i); tiles entirely
above the diagonal are skipped. `reference=True` runs the plain O(T²) softmax instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._util import make_config
from .attention import NEG_INF, scaled_dot_product_attention


@dataclass(frozen=True)
class FlashConfig:
    block_q: int = 32
    block_k: int = 32
    causal: bool = False
    scale: float | None = None  # None → 1/√d

    def __post_init__(self) -> None:
        if self.block_q < 1 or self.block_k < 1:
            raise ValueError("block sizes must be positive")


def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    block_q: int = 32,
    block_k: int = 32,
    causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Tiled online-softmax attention. q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) → (out, lse (..., Tq))."""
    s = q.shape[-1] ** -0.5 if scale is None else scale
    tq, tk = q.shape[-2], k.shape[-2]
    outs: list[Tensor] = []
    lses: list[Tensor] = []
    for q0 in range(0, tq, block_q):  # tile loops have static bounds: torch.export unrolls them
        q1 = min(q0 + block_q, tq)
        qi = q[..., q0:q1, :]  # (..., bq, D)
        m = torch.full((*qi.shape[:-1], 1), NEG_INF, dtype=q.dtype, device=q.device)  # (..., bq, 1)
        ell = torch.zeros_like(m)
        acc = torch.zeros((*qi.shape[:-1], v.shape[-1]), dtype=q.dtype, device=q.device)  # (..., bq, Dv)
        k_end = min(tk, q1) if causal else tk  # keys after the last query of the tile are never visible
        for k0 in range(0, k_end, block_k):
            k1 = min(k0 + block_k, tk)
            sc = torch.matmul(qi, k[..., k0:k1, :].transpose(-2, -1)) * s  # (..., bq, bk)
            if causal and k1 - 1 > q0:  # tile crosses the diagonal: mask per position
                qpos = torch.arange(q0, q1, device=q.device).unsqueeze(1)  # (bq, 1)
                kpos = torch.arange(k0, k1, device=q.device).unsqueeze(0)  # (1, bk)
                sc = sc.masked_fill(kpos > qpos, NEG_INF)
            m_new = torch.maximum(m, sc.amax(dim=-1, keepdim=True))
            m_safe = torch.where(m_new == NEG_INF, torch.zeros_like(m_new), m_new)
            p = torch.exp(sc - m_safe)  # (..., bq, bk)
            corr = torch.exp(m - m_safe)  # e^{m − m'}; 0 while nothing has been seen
            ell = corr * ell + p.sum(dim=-1, keepdim=True)
            acc = corr * acc + torch.matmul(p, v[..., k0:k1, :])
            m = m_new
        outs.append(acc / torch.where(ell == 0, torch.ones_like(ell), ell))
        lses.append((m + torch.log(ell)).squeeze(-1))
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)


class FlashAttention(nn.Module):
    """Exact attention by tiles with an online softmax (see module docstring). Inputs (B, [H,] T, D)."""

    def __init__(self, config: FlashConfig | None = None, reference: bool = False, **overrides: Any) -> None:
        super().__init__()
        self.config = make_config(FlashConfig, config, overrides)
        self.reference = reference

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        c = self.config
        if self.reference:
            return scaled_dot_product_attention(q, k, v, is_causal=c.causal, scale=c.scale)
        return flash_attention(q, k, v, c.block_q, c.block_k, c.causal, c.scale)[0]
