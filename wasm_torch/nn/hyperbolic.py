"""Hyperbolic attention in the Poincaré ball of curvature −c (c > 0).

Ball operations (Ganea, Bécigneul & Hofmann 2018, "Hyperbolic Neural Networks"):

    x ⊕ y      = ((1 + 2c⟨x,y⟩ + c‖y‖²) x + (1 − c‖x‖²) y) / (1 + 2c⟨x,y⟩ + c²‖x‖²‖y‖²)
    λ_x        = 2 / (1 − c‖x‖²)                                    (conformal factor)
    exp_x(v)   = x ⊕ tanh(√c λ_x ‖v‖ / 2) v / (√c ‖v‖)
    log_x(y)   = 2 / (√c λ_x) · artanh(√c ‖u‖) u / ‖u‖,   u = (−x) ⊕ y
    d_c(x, y)  = 2/√c · artanh(√c ‖(−x) ⊕ y‖)
               = 1/√c · arcosh(1 + 2c‖x − y‖² / ((1 − c‖x‖²)(1 − c‖y‖²)))

Attention (Gulcehre et al. 2019, "Hyperbolic Attention Networks"): weights w_ij = softmax_j(−d_c(q_i, k_j)/τ),
aggregated by the Einstein midpoint in the Klein model (k = 2p/(1 + c‖p‖²), γ = 1/√(1 − c‖k‖²),
m = Σ w γ k / Σ w γ, mapped back to the ball) or by the weighted Fréchet mean argmin_m Σ w_j d_c(m, v_j)²,
found with the Karcher flow m ← exp_m(Σ_j w_j log_m v_j) started from the Einstein midpoint.
The fast path computes distances with the arcosh form; `reference=True` uses Möbius addition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ._util import make_config
from .attention import causal_mask, masked_softmax


def _eps(x: Tensor) -> float:
    """Distance kept from the boundary: artanh′ ~ 1/(2ε) amplifies rounding near it (geoopt uses 4e-3 in fp32)."""
    return 4e-3 if x.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-7


def _sqnorm(x: Tensor) -> Tensor:
    return (x * x).sum(dim=-1, keepdim=True)


def _norm(x: Tensor) -> Tensor:
    return _sqnorm(x).clamp_min(1e-30).sqrt()


def _artanh(x: Tensor) -> Tensor:
    x = x.clamp(max=1 - _eps(x))
    return 0.5 * (torch.log1p(x) - torch.log1p(-x))


def project(x: Tensor, c: float) -> Tensor:
    """Pull points back inside the ball of radius (1 − ε)/√c."""
    max_norm = (1 - _eps(x)) / c**0.5
    n = _norm(x)
    return torch.where(n > max_norm, x * (max_norm / n), x)


def mobius_add(x: Tensor, y: Tensor, c: float) -> Tensor:
    xy = (x * y).sum(dim=-1, keepdim=True)
    x2, y2 = _sqnorm(x), _sqnorm(y)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    return num / (1 + 2 * c * xy + c * c * x2 * y2).clamp_min(1e-30)


def conformal_factor(x: Tensor, c: float) -> Tensor:
    return 2 / (1 - c * _sqnorm(x)).clamp_min(1e-30)


def expmap(x: Tensor, v: Tensor, c: float) -> Tensor:
    sc = c**0.5
    vn = _norm(v)
    second = torch.tanh(sc * conformal_factor(x, c) * vn / 2) * v / (sc * vn)
    return project(mobius_add(x, second, c), c)


def logmap(x: Tensor, y: Tensor, c: float) -> Tensor:
    sc = c**0.5
    u = mobius_add(-x, y, c)
    un = _norm(u)
    return 2 / (sc * conformal_factor(x, c)) * _artanh(sc * un) * u / un


def expmap0(v: Tensor, c: float) -> Tensor:
    sc = c**0.5
    vn = _norm(v)
    return project(torch.tanh(sc * vn) * v / (sc * vn), c)


def logmap0(y: Tensor, c: float) -> Tensor:
    sc = c**0.5
    yn = _norm(y)
    return _artanh(sc * yn) * y / (sc * yn)


def dist(x: Tensor, y: Tensor, c: float) -> Tensor:
    """Geodesic distance via Möbius addition (broadcasting over leading axes; reduces the last)."""
    return 2 / c**0.5 * _artanh(c**0.5 * _norm(mobius_add(-x, y, c))).squeeze(-1)


def pairwise_dist(x: Tensor, y: Tensor, c: float) -> Tensor:
    """(..., N, D) × (..., M, D) → (..., N, M) with the arcosh form (no Möbius addition).

    ‖x − y‖² is summed from explicit differences: the matmul expansion ‖x‖² + ‖y‖² − 2⟨x, y⟩ cancels
    catastrophically near the boundary in float32 (divided by (1 − c‖x‖²)(1 − c‖y‖²) ≈ 4e-4 at ‖x‖ = 0.99).
    """
    x2 = _sqnorm(x)  # (..., N, 1)
    y2 = _sqnorm(y).transpose(-2, -1)  # (..., 1, M)
    diff = x.unsqueeze(-2) - y.unsqueeze(-3)  # (..., N, M, D)
    diff2 = (diff * diff).sum(-1)  # ‖x − y‖², (..., N, M)
    denom = ((1 - c * x2) * (1 - c * y2)).clamp_min(1e-30)
    u = 2 * c * diff2 / denom  # arcosh(1 + u) = log1p(u + √(u(u + 2))), accurate for small u
    return torch.log1p(u + torch.sqrt(u * (u + 2) + 1e-30)) / c**0.5  # 1e-30: finite gradient at x = y


def einstein_midpoint(w: Tensor, v: Tensor, c: float) -> Tensor:
    """Weighted Einstein midpoint. w (..., N, M) rows summing to 1, v (..., M, D) in the ball → (..., N, D)."""
    cv2 = c * _sqnorm(v)  # (..., M, 1)
    k = 2 * v / (1 + cv2)  # Poincaré → Klein, (..., M, D)
    gamma = (1 + cv2) / (1 - cv2).clamp_min(1e-30)  # Lorentz factor 1/√(1 − c‖k‖²), without cancellation
    wg = w * gamma.transpose(-2, -1)  # (..., N, M)
    mk = torch.matmul(wg, k) / wg.sum(dim=-1, keepdim=True).clamp_min(1e-30)  # Klein midpoint, (..., N, D)
    return project(mk / (1 + (1 - c * _sqnorm(mk)).clamp_min(0).sqrt()), c)  # Klein → Poincaré


def frechet_mean(w: Tensor, v: Tensor, c: float, iters: int = 20) -> Tensor:
    """Weighted Fréchet (Karcher) mean by fixed-step Karcher flow from the Einstein midpoint."""
    m = einstein_midpoint(w, v, c)  # (..., N, D)
    for _ in range(iters):
        lv = logmap(m.unsqueeze(-2), v.unsqueeze(-3), c)  # (..., N, M, D)
        m = expmap(m, (w.unsqueeze(-1) * lv).sum(dim=-2), c)
    return m


@dataclass(frozen=True)
class HyperbolicConfig:
    dim: int = 64
    curvature: float = 1.0  # c > 0; the ball has sectional curvature −c
    temperature: float = 1.0
    aggregation: Literal["einstein", "frechet"] = "einstein"
    frechet_iters: int = 20
    causal: bool = False
    project_inputs: bool = True  # learned Euclidean projections mapped into the ball with exp_0

    def __post_init__(self) -> None:
        if self.curvature <= 0:
            raise ValueError("curvature c must be > 0 (the ball has curvature −c)")
        if self.aggregation not in ("einstein", "frechet"):
            raise ValueError(f"unknown aggregation {self.aggregation!r}")


class HyperbolicAttention(nn.Module):
    """Attention with −d_c(q, k)/τ scores and hyperbolic aggregation (see module docstring).

    With `project_inputs` the inputs are Euclidean (B, T, D): q, k, v = exp_0(W x). Otherwise q, k, v must
    already be points of the ball. The output is a point of the ball, (B, Tq, D); use `logmap0` to return
    to Euclidean space. `mask` (…, Tq, Tk) bool, True = attend.
    """

    def __init__(
        self, config: HyperbolicConfig | None = None, reference: bool = False, **overrides: Any
    ) -> None:
        super().__init__()
        self.config = cfg = make_config(HyperbolicConfig, config, overrides)
        self.reference = reference
        if cfg.project_inputs:
            self.q_proj = nn.Linear(cfg.dim, cfg.dim)
            self.k_proj = nn.Linear(cfg.dim, cfg.dim)
            self.v_proj = nn.Linear(cfg.dim, cfg.dim)

    def weights(self, q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
        c = self.config.curvature
        # (B, Tq, Tk): Möbius-addition form (reference) or arcosh form
        d = dist(q.unsqueeze(-2), k.unsqueeze(-3), c) if self.reference else pairwise_dist(q, k, c)
        if self.config.causal:
            cm = causal_mask(q.shape[-2], k.shape[-2], q.device)
            mask = cm if mask is None else mask & cm
        return masked_softmax(-d / self.config.temperature, mask)

    def forward(
        self, q: Tensor, k: Tensor | None = None, v: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        cfg = self.config
        k = q if k is None else k
        v = k if v is None else v
        c = cfg.curvature
        if cfg.project_inputs:
            q, k, v = expmap0(self.q_proj(q), c), expmap0(self.k_proj(k), c), expmap0(self.v_proj(v), c)
        w = self.weights(q, k, mask)
        if cfg.aggregation == "einstein":
            return einstein_midpoint(w, v, c)
        return frechet_mean(w, v, c, cfg.frechet_iters)
