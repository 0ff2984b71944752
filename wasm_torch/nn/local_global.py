"""Local-global attention (Longformer: Beltagy, Peters & Cohan 2020, "Longformer: The Long-Document Transformer").

Token i attends to the keys j with |i − j| ≤ w (its own sliding window, centred on i) plus the g global tokens
(positions 0..g−1); global tokens attend to every position. In mask form:

    M_ij = (|i − j| ≤ w) ∨ (j < g) ∨ (i < g)      [∧ (j ≤ i) when causal]
    out  = softmax(Q Kᵀ/√d + log M) V

The fast path gathers, for every query, only its g + 2w + 1 candidate keys (O(T·(g + w)) scores); the global
rows are computed densely. `reference=True` builds the dense (T × T) mask instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._util import make_config
from .attention import gathered_attention, scaled_dot_product_attention


@dataclass(frozen=True)
class LocalGlobalConfig:
    window: int = 4  # one-sided radius w: keys i−w .. i+w
    num_global: int = 1  # g: positions 0..g−1 are global (e.g. a [CLS] token)
    causal: bool = False
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.window < 0 or self.num_global < 0:
            raise ValueError("window and num_global must be ≥ 0")


def local_global_mask(
    t: int, window: int, num_global: int, causal: bool, device: torch.device | None = None
) -> Tensor:
    """Dense (T, T) boolean mask, True = attend."""
    i = torch.arange(t, device=device).unsqueeze(1)  # (T, 1)
    j = torch.arange(t, device=device).unsqueeze(0)  # (1, T)
    m = ((i - j).abs() <= window) | (j < num_global) | (i < num_global)
    return m & (j <= i) if causal else m


def local_global_index(
    t: int, window: int, num_global: int, causal: bool, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Per-query candidate keys: (T, g + 2w + 1) indices and validity (each key appears at most once)."""
    i = torch.arange(t, device=device).unsqueeze(1)  # (T, 1)
    off = torch.arange(-window, window + 1, device=device).unsqueeze(0)  # (1, 2w+1)
    pos = i + off  # (T, 2w+1)
    valid_w = (pos >= num_global) & (pos < t)  # window keys that are not global (those come below)
    if causal:
        valid_w = valid_w & (off <= 0)
    gj = torch.arange(num_global, device=device).unsqueeze(0).expand(t, num_global)  # (T, g)
    valid_g = gj <= i if causal else torch.ones_like(gj, dtype=torch.bool)
    idx = torch.cat([gj, pos.clamp(0, max(t - 1, 0))], dim=1)  # (T, g+2w+1)
    return idx, torch.cat([valid_g, valid_w], dim=1)


class LocalGlobalAttention(nn.Module):
    """Sliding-window + global-token attention over q, k, v of shape (B, [H,] T, D) (self-attention: Tq = Tk)."""

    def __init__(
        self, config: LocalGlobalConfig | None = None, reference: bool = False, **overrides: Any
    ) -> None:
        super().__init__()
        self.config = make_config(LocalGlobalConfig, config, overrides)
        self.reference = reference

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        c = self.config
        t = q.shape[-2]
        if k.shape[-2] != t:
            raise ValueError("local-global attention is self-attention: q and k need the same length")
        if self.reference:
            mask = local_global_mask(t, c.window, c.num_global, c.causal, q.device)
            return scaled_dot_product_attention(q, k, v, mask, scale=c.scale)
        squeeze = q.dim() == 3
        if squeeze:
            q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)  # (B, 1, T, D)
        scale = q.shape[-1] ** -0.5 if c.scale is None else c.scale
        idx, valid = local_global_index(t, c.window, c.num_global, c.causal, q.device)
        local = gathered_attention(q, k, v, idx, valid, scale)  # (B, H, T, Dv)
        g = min(c.num_global, t)
        if g:
            glob = scaled_dot_product_attention(
                q[:, :, :g], k, v, is_causal=c.causal, scale=scale
            )  # (B, H, g, Dv)
            local = torch.cat([glob, local[:, :, g:]], dim=2)  # (B, H, T, Dv)
        return local.squeeze(1) if squeeze else local
