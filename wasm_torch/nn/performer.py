"""Performer linear attention with FAVOR+ positive orthogonal random features.

Choromanski et al. 2021, "Rethinking Attention with Performers" (ICLR). With x' = x / d^{1/4} and
ω_1..ω_m rows of Ω (marginally N(0, I_d), orthogonal within blocks of d),

    φ(x) = exp(Ω x' − ‖x'‖²/2) / √m,      E[φ(q)ᵀ φ(k)] = exp(q'ᵀk') = exp(qᵀk / √d),

so softmax(QKᵀ/√d) V ≈ D⁻¹ φ(Q) (φ(K)ᵀ V) with D = diag(φ(Q) φ(K)ᵀ 1): O(T·m·d) time instead of O(T²·d).
Causal attention uses prefix sums of φ(k_j) v_jᵀ. The per-query and per-sequence stabilisers (max
subtraction) multiply numerator and denominator alike, so they cancel exactly. `reference=True` evaluates
the same estimator in quadratic form (φ(Q) φ(K)ᵀ, masked, normalised) for checking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._util import make_config, merge_heads, split_heads
from .attention import causal_mask


def orthogonal_gaussian(m: int, d: int, generator: torch.Generator, orthogonal: bool = True) -> Tensor:
    """(m, d) random features: blocks of d orthogonal directions with χ_d-distributed norms (rows ~ N(0, I))."""
    if not orthogonal:
        return torch.randn(m, d, generator=generator)
    g = torch.randn(math.ceil(m / d), d, d, generator=generator)  # one Gaussian matrix per block
    q, r = torch.linalg.qr(g)  # batched; orthonormal columns
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(
        -2
    )  # sign fix: makes Q Haar-distributed
    omega = q.transpose(-2, -1).reshape(-1, d)[:m]  # (m, d) unit rows, orthogonal within each block
    norms = torch.randn(m, d, generator=generator).norm(dim=1, keepdim=True)  # χ_d
    return omega * norms


def positive_features(x: Tensor, omega: Tensor, stabilize: str | None = None) -> Tensor:
    """φ(x) = exp(Ωx' − ‖x'‖²/2)/√m with x' = x/d^{1/4}. x (..., T, d), omega (m, d) → (..., T, m).

    stabilize: None (raw features), "row" (subtract each row's max: for queries) or "all" (subtract the max
    over the whole sequence: for keys). Both cancel in the attention normalisation.
    """
    d = x.shape[-1]
    xs = x * d**-0.25
    proj = torch.matmul(xs, omega.T.to(x.dtype))  # (..., T, m)
    logits = proj - (xs * xs).sum(dim=-1, keepdim=True) / 2
    if stabilize == "row":
        logits = logits - logits.amax(dim=-1, keepdim=True).detach()
    elif stabilize == "all":
        logits = logits - logits.amax(dim=(-2, -1), keepdim=True).detach()
    return torch.exp(logits) / math.sqrt(omega.shape[0])


def favor_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    omega: Tensor,
    causal: bool = False,
    reference: bool = False,
    eps: float = 1e-12,
) -> Tensor:
    """FAVOR+ estimate of softmax(qkᵀ/√d) v. q, k (..., T, d), v (..., T, dv), omega (m, d)."""
    fq = positive_features(q, omega, "row")  # (..., Tq, m)
    fk = positive_features(k, omega, "all")  # (..., Tk, m)
    if reference:
        a = torch.matmul(fq, fk.transpose(-2, -1))  # (..., Tq, Tk)
        if causal:
            a = a * causal_mask(q.shape[-2], k.shape[-2], q.device)
        return torch.matmul(a, v) / (a.sum(dim=-1, keepdim=True) + eps)
    if not causal:
        kv = torch.matmul(fk.transpose(-2, -1), v)  # (..., m, dv)
        z = fk.sum(dim=-2)  # (..., m)
        num = torch.matmul(fq, kv)  # (..., Tq, dv)
        den = (fq * z.unsqueeze(-2)).sum(dim=-1, keepdim=True)  # (..., Tq, 1)
        return num / (den + eps)
    if q.shape[-2] != k.shape[-2]:
        raise ValueError("causal FAVOR+ needs as many queries as keys")
    kv = torch.cumsum(fk.unsqueeze(-1) * v.unsqueeze(-2), dim=-3)  # prefix Σ φ(k_j) v_jᵀ, (..., T, m, dv)
    z = torch.cumsum(fk, dim=-2)  # (..., T, m)
    num = torch.matmul(fq.unsqueeze(-2), kv).squeeze(-2)  # (..., T, dv)
    den = (fq * z).sum(dim=-1, keepdim=True)
    return num / (den + eps)


@dataclass(frozen=True)
class PerformerConfig:
    dim: int = 64
    heads: int = 4
    num_features: int = 64  # m random features per head (the paper suggests Θ(d log d))
    orthogonal: bool = True
    causal: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")


class PerformerAttention(nn.Module):
    """Multi-head Performer (FAVOR+) attention with Q/K/V/O projections. Input (B, T, D)."""

    omega: Tensor

    def __init__(
        self, config: PerformerConfig | None = None, reference: bool = False, **overrides: Any
    ) -> None:
        super().__init__()
        self.config = cfg = make_config(PerformerConfig, config, overrides)
        self.reference = reference
        self.q_proj = nn.Linear(cfg.dim, cfg.dim)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim)
        self.o_proj = nn.Linear(cfg.dim, cfg.dim)
        self.register_buffer("omega", torch.empty(cfg.num_features, cfg.dim // cfg.heads))
        self.redraw(cfg.seed)

    def redraw(self, seed: int) -> None:
        """Draw a fresh feature matrix Ω (the paper redraws periodically during training)."""
        g = torch.Generator().manual_seed(seed)
        cfg = self.config
        self.omega.copy_(orthogonal_gaussian(cfg.num_features, cfg.dim // cfg.heads, g, cfg.orthogonal))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        ctx = x if context is None else context
        h = self.config.heads
        q = split_heads(self.q_proj(x), h)  # (B, H, Tq, Dh)
        k = split_heads(self.k_proj(ctx), h)  # (B, H, Tk, Dh)
        v = split_heads(self.v_proj(ctx), h)  # (B, H, Tk, Dh)
        out = favor_attention(q, k, v, self.omega, self.config.causal, self.reference)  # (B, H, Tq, Dh)
        return self.o_proj(merge_heads(out))  # (B, Tq, D)
