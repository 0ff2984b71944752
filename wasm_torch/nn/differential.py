"""Differential attention (Ye et al. 2024, "Differential Transformer", arXiv:2410.05258).

Per head, with [Q₁; Q₂] = X W_Q, [K₁; K₂] = X W_K (head width d each), V = X W_V (width 2d):

    DiffAttn(X) = (softmax(Q₁K₁ᵀ/√d) − λ softmax(Q₂K₂ᵀ/√d)) V
    λ = exp(λ_q1 · λ_k1) − exp(λ_q2 · λ_k2) + λ_init,     λ_init = 0.8 − 0.6·exp(−0.3·(l − 1))
    head_h = (1 − λ_init) · RMSNorm(DiffAttn_h(X)),          out = concat_h(head_h) W_O

The difference of two softmax maps cancels attention "noise" common to both. λ_q1, λ_k1, λ_q2, λ_k2 ∈ ℝᵈ are
learnable and shared by the heads of a layer (initialised N(0, 0.1²), as in the paper's code); l is the
1-based layer index. The number of heads is H = dim / (2d).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._util import make_config
from .attention import causal_mask, masked_softmax


@dataclass(frozen=True)
class DifferentialConfig:
    dim: int = 64
    heads: int = 2  # H; head width d = dim / (2H)
    layer_index: int = 1  # l ≥ 1, sets λ_init
    causal: bool = False
    norm_eps: float = 1e-5
    seed: int = 0  # initialisation of the λ vectors

    def __post_init__(self) -> None:
        if self.dim % (2 * self.heads):
            raise ValueError(f"dim {self.dim} must be divisible by 2·heads = {2 * self.heads}")
        if self.layer_index < 1:
            raise ValueError("layer_index is 1-based")

    @property
    def head_dim(self) -> int:
        return self.dim // (2 * self.heads)

    @property
    def lambda_init(self) -> float:
        return 0.8 - 0.6 * math.exp(-0.3 * (self.layer_index - 1))


class DifferentialAttention(nn.Module):
    """Multi-head differential attention (see module docstring). Input (B, T, D); `mask` (…, T, T) bool."""

    def __init__(self, config: DifferentialConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = make_config(DifferentialConfig, config, overrides)
        self.q_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.o_proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        g = torch.Generator().manual_seed(cfg.seed)
        d = cfg.head_dim
        self.lambda_q1 = nn.Parameter(0.1 * torch.randn(d, generator=g))
        self.lambda_k1 = nn.Parameter(0.1 * torch.randn(d, generator=g))
        self.lambda_q2 = nn.Parameter(0.1 * torch.randn(d, generator=g))
        self.lambda_k2 = nn.Parameter(0.1 * torch.randn(d, generator=g))
        self.norm_weight = nn.Parameter(torch.ones(2 * d))  # RMSNorm gain over each head's 2d outputs

    def lam(self) -> Tensor:
        """The re-parameterised scalar λ."""
        return (
            torch.exp((self.lambda_q1 * self.lambda_k1).sum())
            - torch.exp((self.lambda_q2 * self.lambda_k2).sum())
            + self.config.lambda_init
        )

    def attention_maps(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The two softmax maps, each (B, H, T, T)."""
        cfg = self.config
        b, t, _ = x.shape
        h, d = cfg.heads, cfg.head_dim
        q = self.q_proj(x).reshape(b, t, h, 2, d).permute(3, 0, 2, 1, 4)  # (2, B, H, T, d)
        k = self.k_proj(x).reshape(b, t, h, 2, d).permute(3, 0, 2, 1, 4)  # (2, B, H, T, d)
        if cfg.causal:
            cm = causal_mask(t, t, x.device)
            mask = cm if mask is None else mask & cm
        s = d**-0.5
        a1 = masked_softmax(torch.matmul(q[0], k[0].transpose(-2, -1)) * s, mask)  # (B, H, T, T)
        a2 = masked_softmax(torch.matmul(q[1], k[1].transpose(-2, -1)) * s, mask)  # (B, H, T, T)
        return a1, a2

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        cfg = self.config
        b, t, _ = x.shape
        h, d = cfg.heads, cfg.head_dim
        a1, a2 = self.attention_maps(x, mask)
        v = self.v_proj(x).reshape(b, t, h, 2 * d).transpose(1, 2)  # (B, H, T, 2d)
        out = torch.matmul(a1 - self.lam() * a2, v)  # (B, H, T, 2d)
        rms = torch.rsqrt((out * out).mean(dim=-1, keepdim=True) + cfg.norm_eps)
        out = out * rms * self.norm_weight * (1 - cfg.lambda_init)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, h * 2 * d))  # (B, T, D)
