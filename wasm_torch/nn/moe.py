"""Mixture-of-experts attention: a learned router sends each token to its top-k attention experts.

Mixture of Attention Heads (Zhang et al. 2022, "Mixture of Attention Heads: Selecting Attention Heads Per
Token"): K = X W_K and V = X W_V are shared; expert e owns W_Qᵉ and W_Oᵉ, and

    p(t) = softmax(W_g x_t),   E_e(t) = softmax(x_t W_Qᵉ Kᵀ / √d) V W_Oᵉ,
    out_t = Σ_{e ∈ top-k(p(t)), kept} g_e(t) E_e(t),   g = top-k probabilities renormalised to sum 1.

Capacity (Fedus, Zoph & Shazeer 2022, "Switch Transformers"; Lepikhin et al. 2021, GShard): each expert
takes at most C = ⌈capacity_factor · T · k / E⌉ tokens per sequence; slots are filled first by every token's
first choice in token order, then by second choices, …; a token over capacity gets nothing from that expert.
Load-balancing loss (Switch): L_aux = E · Σ_e f_e P_e, f_e = share of routed (token, choice) pairs sent to e,
P_e = mean router probability of e; it equals 1 under perfectly uniform routing and is differentiable via P.
The fast path evaluates every expert densely and combines with the (sparse) gates; `reference=True` loops
over tokens and runs only the chosen experts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ._util import make_config
from .attention import causal_mask, masked_softmax


@dataclass(frozen=True)
class MoEConfig:
    dim: int = 64
    experts: int = 4
    top_k: int = 2
    head_dim: int = 16
    capacity_factor: float = 1.25
    jitter: float = 0.0  # multiplicative router-input noise U(1−ε, 1+ε), training only
    causal: bool = False
    normalize_gates: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= self.experts:
            raise ValueError("need 1 ≤ top_k ≤ experts")
        if self.capacity_factor <= 0:
            raise ValueError("capacity_factor must be > 0")

    def capacity(self, tokens: int) -> int:
        return math.ceil(self.capacity_factor * tokens * self.top_k / self.experts)


class Routing(NamedTuple):
    probs: Tensor  # (B, T, E) router softmax
    gates: Tensor  # (B, T, E) combine weights, zero for unchosen or over-capacity experts
    chosen: Tensor  # (B, T, k) expert indices by preference
    kept: Tensor  # (B, T, k) bool, False where the expert was full
    aux_loss: Tensor  # scalar load-balancing loss


class MoEAttention(nn.Module):
    """Token-routed mixture of attention experts (see module docstring). Input (B, T, D)."""

    def __init__(self, config: MoEConfig | None = None, reference: bool = False, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = make_config(MoEConfig, config, overrides)
        self.reference = reference
        self.router = nn.Linear(cfg.dim, cfg.experts, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.head_dim)
        self.v_proj = nn.Linear(cfg.dim, cfg.head_dim)
        bound = cfg.dim**-0.5
        self.w_q = nn.Parameter(torch.empty(cfg.experts, cfg.dim, cfg.head_dim).uniform_(-bound, bound))
        self.w_o = nn.Parameter(torch.empty(cfg.experts, cfg.head_dim, cfg.dim).uniform_(-bound, bound))

    def route(self, x: Tensor) -> Routing:
        cfg = self.config
        b, t, _ = x.shape
        if self.training and cfg.jitter > 0:
            x = x * torch.empty_like(x).uniform_(1 - cfg.jitter, 1 + cfg.jitter)
        probs = torch.softmax(self.router(x), dim=-1)  # (B, T, E)
        top_p, chosen = probs.topk(cfg.top_k, dim=-1)  # (B, T, k)
        if cfg.normalize_gates:
            top_p = top_p / top_p.sum(-1, keepdim=True)
        onehot = torch.nn.functional.one_hot(chosen, cfg.experts).to(x.dtype)  # (B, T, k, E)
        order = onehot.transpose(1, 2).reshape(b, cfg.top_k * t, cfg.experts)  # choice-major, (B, k·T, E)
        position = (torch.cumsum(order, dim=1) - order).reshape(b, cfg.top_k, t, cfg.experts)  # slots before
        slot = (position.transpose(1, 2) * onehot).sum(-1)  # (B, T, k): this choice's slot in its expert
        kept = slot < cfg.capacity(t)
        gates = (onehot * (top_p * kept).unsqueeze(-1)).sum(2)  # (B, T, E)
        f = onehot.sum(2).mean(dim=1) / cfg.top_k  # (B, E) share of routed pairs
        aux = cfg.experts * (f * probs.mean(dim=1)).sum(-1).mean()
        return Routing(probs, gates, chosen, kept, aux)

    def experts_out(self, x: Tensor) -> Tensor:
        """Every expert's attention output for every token, (B, E, T, D)."""
        cfg = self.config
        k = self.k_proj(x).unsqueeze(1)  # (B, 1, T, dh)
        v = self.v_proj(x).unsqueeze(1)  # (B, 1, T, dh)
        q = torch.matmul(x.unsqueeze(1), self.w_q)  # (B, E, T, dh)
        scores = torch.matmul(q, k.transpose(-2, -1)) * cfg.head_dim**-0.5  # (B, E, T, T)
        mask = causal_mask(x.shape[1], x.shape[1], x.device) if cfg.causal else None
        return torch.matmul(torch.matmul(masked_softmax(scores, mask), v), self.w_o)  # (B, E, T, D)

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r = self.route(x)
        if self.reference:
            return self._reference(x, r), r.aux_loss
        out = (r.gates.transpose(1, 2).unsqueeze(-1) * self.experts_out(x)).sum(1)  # (B, T, D)
        return out, r.aux_loss

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_aux(x)[0]

    def _reference(self, x: Tensor, r: Routing) -> Tensor:
        """Token loop: run only the chosen experts, counting capacity explicitly."""
        cfg = self.config
        b, t, d = x.shape
        k = self.k_proj(x)  # (B, T, dh)
        v = self.v_proj(x)
        out = x.new_zeros(b, t, d)
        top_p = r.probs.gather(-1, r.chosen)
        if cfg.normalize_gates:
            top_p = top_p / top_p.sum(-1, keepdim=True)
        for bi in range(b):
            load = [0] * cfg.experts
            for choice in range(cfg.top_k):
                for ti in range(t):
                    e = int(r.chosen[bi, ti, choice])
                    if load[e] >= cfg.capacity(t):
                        continue
                    load[e] += 1
                    keys = ti + 1 if cfg.causal else t
                    q = x[bi, ti] @ self.w_q[e]
                    w = torch.softmax(k[bi, :keys] @ q * cfg.head_dim**-0.5, dim=0)
                    out[bi, ti] += top_p[bi, ti, choice] * ((w @ v[bi, :keys]) @ self.w_o[e])
        return out
