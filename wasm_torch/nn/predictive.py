"""Predictive-coding gate: transmit only prediction residuals that exceed a threshold.

Predictive coding in the sense of Rao & Ballard 1999 ("Predictive coding in the visual cortex") and of
DPCM / send-on-delta coding: sender and receiver run the same predictor on what the receiver has, so only
surprising changes cross the channel. Per stream and step t:

    p_t  = prediction from the receiver's past reconstructions: p_{t+1} = p_t + α (x̂_t − p_t), p_0 = 0
           (α = 1 holds the last reconstruction: send-on-delta)
    r_t  = x_t − p_t
    send = RMS(r_t) > θ            (granularity "vector": whole vector or nothing)
         | |r_t,d| > θ             (granularity "element": each coordinate separately)
    x̂_t = p_t + send ⊙ r_t

so the reconstruction error is never above θ (RMS per vector, or per element). The sender tracks x̂ = p + r
exactly as the receiver computes it, so both predictors stay bit-identical (`decode`). Bandwidth saved = 1 − (sent
units / all units); element mode counts values only (a sparse message also needs their indices).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from ._util import make_config


@dataclass(frozen=True)
class PredictiveConfig:
    threshold: float = 0.1
    alpha: float = 1.0  # predictor rate (1 = hold the last reconstruction)
    granularity: Literal["vector", "element"] = "vector"

    def __post_init__(self) -> None:
        if self.granularity not in ("vector", "element"):
            raise ValueError("granularity ∈ {'vector', 'element'}")
        if not 0 < self.alpha <= 1 or self.threshold < 0:
            raise ValueError("need 0 < alpha ≤ 1 and threshold ≥ 0")


class Coded(NamedTuple):
    reconstruction: Tensor  # x̂ (B, T, D)
    sent: Tensor  # (B, T) or (B, T, D) bool
    residuals: Tensor  # r ⊙ send (B, T, D): exactly what crosses the channel
    bandwidth_saved: Tensor  # () fraction of units not sent


class PredictiveCodingGate(nn.Module):
    """Threshold-gated residual transmission (see module docstring). forward(x (B, T, D)) → Coded."""

    def __init__(self, config: PredictiveConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = make_config(PredictiveConfig, config, overrides)

    def _next_prediction(self, p: Tensor, xhat: Tensor) -> Tensor:
        return p + self.config.alpha * (xhat - p)

    def forward(self, x: Tensor) -> Coded:
        c = self.config
        p = torch.zeros_like(x[:, 0])
        recon, sent, res = [], [], []
        for t in range(x.shape[1]):
            r = x[:, t] - p
            if c.granularity == "vector":
                s = torch.sqrt((r * r).mean(-1)) > c.threshold  # (B,)
                gate = s.unsqueeze(-1).to(x.dtype)
            else:
                s = r.abs() > c.threshold  # (B, D)
                gate = s.to(x.dtype)
            xhat = p + gate * r
            recon.append(xhat)
            sent.append(s)
            res.append(gate * r)
            p = self._next_prediction(p, xhat)
        sent_t = torch.stack(sent, 1)
        return Coded(torch.stack(recon, 1), sent_t, torch.stack(res, 1), 1 - sent_t.to(x.dtype).mean())

    def decode(self, residuals: Tensor) -> Tensor:
        """Receiver side: rebuild x̂ (B, T, D) from the transmitted residuals alone."""
        p = torch.zeros_like(residuals[:, 0])
        out = []
        for t in range(residuals.shape[1]):
            xhat = p + residuals[:, t]
            out.append(xhat)
            p = self._next_prediction(p, xhat)
        return torch.stack(out, 1)
