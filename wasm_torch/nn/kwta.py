"""k-winner-take-all: keep the k largest activations along an axis, silence the rest.

    y_i = x_i · [x_i is among the k largest of x  ∧  x_i > θ]

A standard sparse-coding non-linearity (Majani, Erlanson & Abu-Mostafa 1989, "On the k-winners-take-all
network"; Makhzani & Frey 2014, "k-Sparse Autoencoders"; Ahmad & Scheinkman 2019, "How Can We Be So
Dense?"). Gradients flow only through the winners. Outputs: the winning values, a 0/1 mask, or the winning
values L1-normalised. Ties at the k-th value are broken by `torch.topk` (exactly k winners per row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ._util import make_config


@dataclass(frozen=True)
class KWTAConfig:
    k: int = 5
    dim: int = -1
    threshold: float | None = None  # winners must also exceed θ
    output: Literal["values", "mask", "normalized"] = "values"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError("k must be ≥ 1")
        if self.output not in ("values", "mask", "normalized"):
            raise ValueError(f"unknown output {self.output!r}")


class KWinnerTakeAll(nn.Module):
    """Keep the top-k entries along `dim` (see module docstring). Any input shape."""

    def __init__(self, config: KWTAConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = make_config(KWTAConfig, config, overrides)

    def mask(self, x: Tensor) -> Tensor:
        c = self.config
        k = min(c.k, x.shape[c.dim])
        idx = x.topk(k, dim=c.dim).indices
        m = torch.zeros_like(x).scatter(c.dim, idx, 1.0)
        if c.threshold is not None:
            m = m * (x > c.threshold).to(x.dtype)
        return m

    def forward(self, x: Tensor) -> Tensor:
        m = self.mask(x)
        if self.config.output == "mask":
            return m
        y = x * m
        if self.config.output == "normalized":
            return y / y.abs().sum(self.config.dim, keepdim=True).clamp_min(1e-30)
        return y
