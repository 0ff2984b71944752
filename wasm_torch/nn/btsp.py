"""Behavioural-timescale synaptic plasticity (BTSP): one-shot association from a single plateau potential.

Bittner et al. 2017, "Behavioral time scale synaptic plasticity underlies CA1 place fields" (Science);
Milstein et al. 2021, "Bidirectional synaptic plasticity rapidly modifies hippocampal representations"
(eLife). A presynaptic input tags its synapses with a slowly decaying eligibility trace ET (τ_ET ≈ 1.66 s); a
dendritic plateau potential in the postsynaptic cell leaves an instructive signal IS (τ_IS ≈ 0.44 s). Their
overlap, not spike timing, drives a weight-dependent bidirectional change:

    ET_j ← max(e^{−dt/τ_ET} ET_j, x_j),        IS_i ← max(e^{−dt/τ_IS} IS_i, P_i)     (peak-normalised traces)
    dW_ij/dt = (W_max − W_ij) k₊ q₊(ET_j IS_i) − W_ij k₋ q₋(ET_j IS_i)
    q(s) = (σ(β(s − θ)) − σ(−βθ)) / (σ(β(1 − θ)) − σ(−βθ))       (so q(0) = 0, q(1) = 1)
    y_i = Σ_j W_ij x_j

q₋ has the lower threshold, so inputs that overlap the plateau strongly are potentiated towards
W* = k₊q₊ / (k₊q₊ + k₋q₋) while weakly overlapping (seconds-away) inputs are depressed. A single
pairing — input pattern plus a plateau within ~1–2 s — is enough to store an association (one-shot). This is
not an error-driven rule: there is no target/output difference anywhere. Constants are illustrative (the
time constants are the paper's); weights are buffers changed by the rule, not by backprop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._util import make_config


@dataclass(frozen=True)
class BTSPConfig:
    in_features: int = 64
    out_features: int = 16
    dt: float = 0.01  # s per step
    tau_et: float = 1.66  # s, presynaptic eligibility trace
    tau_is: float = 0.44  # s, plateau-driven instructive signal
    k_plus: float = 4.0  # 1/s
    k_minus: float = 0.3  # 1/s
    theta_plus: float = 0.3
    beta_plus: float = 10.0
    theta_minus: float = 0.1
    beta_minus: float = 20.0
    w_max: float = 1.0
    w_init: float = 0.0


def overlap_gain(s: Tensor, theta: float, beta: float) -> Tensor:
    """Sigmoid normalised to q(0) = 0, q(1) = 1."""
    lo = 1 / (1 + math.exp(beta * theta))
    hi = 1 / (1 + math.exp(-beta * (1 - theta)))
    return (torch.sigmoid(beta * (s - theta)) - lo) / (hi - lo)


class BTSPLayer(nn.Module):
    """Linear layer y = W x whose weights learn by BTSP (see module docstring).

    forward(x (B, T, in), plateau (B, T, out) or None) → y (B, T, out). With a plateau signal and
    `self.learning` the weights change online during the episode (updates summed over the batch); every call
    starts with empty traces, i.e. episodes are assumed to be ≫ τ_ET apart.
    """

    weight: Tensor

    def __init__(self, config: BTSPConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = make_config(BTSPConfig, config, overrides)
        self.register_buffer("weight", torch.full((cfg.out_features, cfg.in_features), cfg.w_init))
        self.learning = True

    def weight_change_rate(self, s: Tensor, w: Tensor) -> Tensor:
        c = self.config
        return (c.w_max - w) * c.k_plus * overlap_gain(
            s, c.theta_plus, c.beta_plus
        ) - w * c.k_minus * overlap_gain(s, c.theta_minus, c.beta_minus)

    def forward(self, x: Tensor, plateau: Tensor | None = None) -> Tensor:
        if plateau is None or not self.learning:
            return torch.matmul(x, self.weight.T.to(x.dtype))
        c = self.config
        lam_et, lam_is = math.exp(-c.dt / c.tau_et), math.exp(-c.dt / c.tau_is)
        b = x.shape[0]
        et = x.new_zeros(b, c.in_features)
        is_ = x.new_zeros(b, c.out_features)
        w = self.weight.to(x.dtype)
        ys = []
        for t in range(x.shape[1]):
            ys.append(torch.matmul(x[:, t], w.T))
            et = torch.maximum(lam_et * et, x[:, t])
            is_ = torch.maximum(lam_is * is_, plateau[:, t])
            s = is_.unsqueeze(-1) * et.unsqueeze(-2)  # overlap per synapse and episode, (B, out, in)
            w = (w + c.dt * self.weight_change_rate(s, w.unsqueeze(0)).sum(0)).clamp(0, c.w_max)
        self.weight.copy_(w)
        return torch.stack(ys, dim=1)
