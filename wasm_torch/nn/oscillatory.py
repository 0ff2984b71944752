"""Oscillatory (communication-through-coherence) routing with Kuramoto phase dynamics.

Kuramoto 1975/1984 ("Chemical Oscillations, Waves, and Turbulence"); Strogatz 2000, "From Kuramoto to
Crawford"; routing by phase coherence after Fries 2005/2015 ("Communication through coherence").

    dθ_i/dt = ω_i + (K/N) Σ_j A_ij sin(θ_j − θ_i)            (explicit Euler step dt, phases wrapped to [0, 2π))
    r e^{iψ} = (1/N) Σ_j e^{iθ_j}                             (order parameter, r ∈ [0, 1])
    g_ij = (1 + cos(θ_i − θ_j)) / 2                           (gain: 1 in phase, 0 in anti-phase)
    out_i = Σ_j A_ij g_ij m_j / Σ_j A_ij                      (phase-gated mean of the messages m_j)

For all-to-all coupling (A = 1) the interaction is exactly K r sin(ψ − θ_i), O(N) per step. With large N
and Lorentzian frequencies of half-width γ the stationary r is √(1 − 2γ/K) above K_c = 2γ (Kuramoto).
The fast path writes Σ_j A_ij sin(θ_j − θ_i) = cos θ_i (A sin θ)_i − sin θ_i (A cos θ)_i (matmuls, no N×N
trigonometry); `reference=True` evaluates the sin(θ_j − θ_i) matrix directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._util import make_config

TWO_PI = 2 * math.pi


@dataclass(frozen=True)
class KuramotoConfig:
    coupling: float = 2.0  # K
    dt: float = 0.01
    wrap: bool = True


def order_parameter(theta: Tensor) -> tuple[Tensor, Tensor]:
    """(r, ψ) over the last axis."""
    c, s = torch.cos(theta).mean(-1), torch.sin(theta).mean(-1)
    return torch.sqrt(c * c + s * s), torch.atan2(s, c)


def gain(theta: Tensor) -> Tensor:
    """(…, N) → (…, N, N) with g_ij = (1 + cos(θ_i − θ_j))/2, via cos θ_i cos θ_j + sin θ_i sin θ_j."""
    c, s = torch.cos(theta).unsqueeze(-1), torch.sin(theta).unsqueeze(-1)  # (…, N, 1)
    return (1 + torch.matmul(c, c.transpose(-2, -1)) + torch.matmul(s, s.transpose(-2, -1))) / 2


class KuramotoRouter(nn.Module):
    """Phase oscillators that gate message passing (see module docstring).

    θ, ω (B, N); adjacency (N, N) or (B, N, N) or None (all-to-all); messages (B, N, D).
    """

    def __init__(
        self, config: KuramotoConfig | None = None, reference: bool = False, **overrides: Any
    ) -> None:
        super().__init__()
        self.config = make_config(KuramotoConfig, config, overrides)
        self.reference = reference

    def coupling_term(self, theta: Tensor, adjacency: Tensor | None = None) -> Tensor:
        """(K/N) Σ_j A_ij sin(θ_j − θ_i), (B, N)."""
        k, n = self.config.coupling, theta.shape[-1]
        if self.reference:
            diff = torch.sin(theta.unsqueeze(-2) - theta.unsqueeze(-1))  # [i, j] = sin(θ_j − θ_i), (B, N, N)
            a = torch.ones_like(diff) if adjacency is None else adjacency.to(theta.dtype)
            return k / n * (a * diff).sum(-1)
        c, s = torch.cos(theta), torch.sin(theta)
        if adjacency is None:
            return k * (c * s.mean(-1, keepdim=True) - s * c.mean(-1, keepdim=True))  # K r sin(ψ − θ_i)
        a = adjacency.to(theta.dtype)
        a_s = torch.matmul(a, s.unsqueeze(-1)).squeeze(-1)  # (B, N)
        a_c = torch.matmul(a, c.unsqueeze(-1)).squeeze(-1)
        return k / n * (c * a_s - s * a_c)

    def step(self, theta: Tensor, omega: Tensor, adjacency: Tensor | None = None) -> Tensor:
        theta = theta + self.config.dt * (omega + self.coupling_term(theta, adjacency))
        return torch.remainder(theta, TWO_PI) if self.config.wrap else theta

    def simulate(self, theta: Tensor, omega: Tensor, steps: int, adjacency: Tensor | None = None) -> Tensor:
        """Phases after each of `steps` Euler steps, (B, steps, N)."""
        out = []
        for _ in range(steps):
            theta = self.step(theta, omega, adjacency)
            out.append(theta)
        return torch.stack(out, dim=1)

    @staticmethod
    def route(messages: Tensor, theta: Tensor, adjacency: Tensor | None = None) -> Tensor:
        g = gain(theta)  # (B, N, N)
        a = torch.ones_like(g) if adjacency is None else adjacency.to(g.dtype).expand_as(g)
        w = a * g / a.sum(-1, keepdim=True).clamp_min(1e-30)
        return torch.matmul(w, messages)  # (B, N, D)

    def forward(
        self, messages: Tensor, theta: Tensor, omega: Tensor, adjacency: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Advance the phases one step, then route: returns (routed messages (B, N, D), new θ)."""
        theta = self.step(theta, omega, adjacency)
        return self.route(messages, theta, adjacency), theta
