"""Sparse Transformer attention with strided and fixed patterns (Child, Gray, Radford & Sutskever 2019,
"Generating Long Sequences with Sparse Transformers").

Query i attends to the union ("merged heads") of two index sets, with stride l (≈ √T) and, for `fixed`, c
summary positions per block:

    strided:  A¹_i = {j : 0 ≤ i − j ≤ l},            A²_i = {j : (i − j) mod l = 0}
    fixed:    A¹_i = {j : ⌊j/l⌋ = ⌊i/l⌋},            A²_i = {j : j mod l ∈ {l − c, …, l − 1}}

restricted to j ≤ i when causal (the paper's autoregressive setting); without `causal` the strided sets are
symmetric (|i − j| ≤ l, |i − j| mod l = 0). Every position reaches every earlier one in two hops while each
row keeps O(√T) keys. The fast path gathers each query's O(l + T/l) keys; `reference=True` applies the dense
(T × T) mask to full attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ._util import make_config
from .attention import gathered_attention, scaled_dot_product_attention


@dataclass(frozen=True)
class SparseConfig:
    pattern: Literal["strided", "fixed"] = "strided"
    stride: int = 8  # l
    summary: int = 1  # c (fixed pattern only), 1 ≤ c ≤ l
    causal: bool = True
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.pattern not in ("strided", "fixed"):
            raise ValueError(f"unknown pattern {self.pattern!r}")
        if self.stride < 1 or not 1 <= self.summary <= self.stride:
            raise ValueError("need stride ≥ 1 and 1 ≤ summary ≤ stride")


def sparse_mask(t: int, cfg: SparseConfig, device: torch.device | None = None) -> Tensor:
    """Dense (T, T) boolean mask of the pattern, True = attend."""
    i = torch.arange(t, device=device).unsqueeze(1)  # (T, 1)
    j = torch.arange(t, device=device).unsqueeze(0)  # (1, T)
    l = cfg.stride
    if cfg.pattern == "strided":
        diff = i - j if cfg.causal else (i - j).abs()
        m = ((diff >= 0) & (diff <= l)) | (diff.remainder(l) == 0)
    else:
        m = (torch.div(j, l, rounding_mode="floor") == torch.div(i, l, rounding_mode="floor")) | (
            j.remainder(l) >= l - cfg.summary
        )
    return m & (j <= i) if cfg.causal else m


def sparse_index(t: int, cfg: SparseConfig, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Per-query candidate keys (T, K) and validity; each attended key appears exactly once per row."""
    i = torch.arange(t, device=device).unsqueeze(1)  # (T, 1)
    l = cfg.stride
    n_blocks = math.ceil(t / l)
    if cfg.pattern == "strided":
        near = torch.arange(0, l + 1, device=device)  # window offsets 0..l
        far = (
            torch.arange(2, n_blocks + 1, device=device) * l
        )  # column offsets 2l, 3l, … (l is in the window)
        offs = torch.cat([near, far]) if cfg.causal else torch.cat([near, -near[1:], far, -far])
        pos = i - offs.unsqueeze(0)  # (T, K)
        valid = (pos >= 0) & (pos < t)
    else:
        start = torch.div(i, l, rounding_mode="floor") * l  # first position of i's block, (T, 1)
        own = start + torch.arange(l, device=device).unsqueeze(0)  # (T, l)
        summ = (
            torch.arange(n_blocks, device=device).unsqueeze(1) * l
            + torch.arange(l - cfg.summary, l, device=device).unsqueeze(0)
        ).reshape(1, -1)  # (1, nb·c)
        pos = torch.cat([own, summ.expand(t, -1)], dim=1)  # (T, l + nb·c)
        other_block = torch.div(pos, l, rounding_mode="floor") != torch.div(i, l, rounding_mode="floor")
        valid = (pos < t) & torch.cat([torch.ones_like(own, dtype=torch.bool), other_block[:, l:]], dim=1)
        if cfg.causal:
            valid = valid & (pos <= i)
    return pos.clamp(0, max(t - 1, 0)), valid


def density(t: int, cfg: SparseConfig) -> float:
    """Attended pairs as a fraction of the pairs full (causal or not) attention would use."""
    full = t * (t + 1) / 2 if cfg.causal else t * t
    return sparse_mask(t, cfg).sum().item() / full


class SparseAttention(nn.Module):
    """Strided / fixed sparse self-attention over q, k, v of shape (B, [H,] T, D)."""

    def __init__(self, config: SparseConfig | None = None, reference: bool = False, **overrides: Any) -> None:
        super().__init__()
        self.config = make_config(SparseConfig, config, overrides)
        self.reference = reference

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        c = self.config
        t = q.shape[-2]
        if k.shape[-2] != t:
            raise ValueError("sparse attention is self-attention: q and k need the same length")
        if self.reference:
            return scaled_dot_product_attention(q, k, v, sparse_mask(t, c, q.device), scale=c.scale)
        squeeze = q.dim() == 3
        if squeeze:
            q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)  # (B, 1, T, D)
        scale = q.shape[-1] ** -0.5 if c.scale is None else c.scale
        idx, valid = sparse_index(t, c, q.device)
        out = gathered_attention(q, k, v, idx, valid, scale)  # (B, H, T, Dv)
        return out.squeeze(1) if squeeze else out
