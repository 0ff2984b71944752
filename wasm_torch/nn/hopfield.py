"""Modern (dense, continuous) Hopfield retrieval and a hierarchical stack of it.

Ramsauer et al. 2021, "Hopfield Networks is All You Need" (ICLR). With stored patterns X ∈ ℝ^{N×d} (rows) and
state ξ ∈ ℝ^d, the update

    ξ' = Xᵀ softmax(β X ξ)

never increases the energy E(ξ) = −β⁻¹ log Σ_i exp(β x_iᵀξ) + ½ ξᵀξ + β⁻¹ log N + ½ max_i ‖x_i‖² and
converges to a fixed point near a stored pattern after one step when patterns are well separated. One update
is attention with Q = ξ, K = V = X and scale β.

Hierarchy: level ℓ holds keys K_ℓ (N_ℓ × d_ℓ) and values V_ℓ (N_ℓ × d_{ℓ+1}) (V_ℓ = K_ℓ for an
auto-associative level); ξ_{ℓ+1} = V_ℓᵀ softmax(β_ℓ K_ℓ ξ_ℓ), iterated `steps` times on auto-associative
levels. E.g. level 0 cleans a noisy cue up to the nearest stored item, level 1 maps the item to its category,
level 2 maps the category to its super-category.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._util import make_config


def hopfield_update(xi: Tensor, keys: Tensor, values: Tensor, beta: float) -> Tensor:
    """values ᵀ softmax(β keys ξ) for each state. xi (..., Q, d), keys (..., N, d), values (..., N, d')."""
    return torch.matmul(torch.softmax(beta * torch.matmul(xi, keys.transpose(-2, -1)), dim=-1), values)


def hopfield_energy(xi: Tensor, patterns: Tensor, beta: float) -> Tensor:
    """Ramsauer et al. eq. (2): the energy of each state ξ (..., Q, d) for patterns (..., N, d) → (..., Q)."""
    n = patterns.shape[-2]
    lse = torch.logsumexp(beta * torch.matmul(xi, patterns.transpose(-2, -1)), dim=-1)
    m2 = (patterns * patterns).sum(-1).amax(-1, keepdim=True)
    return -lse / beta + 0.5 * (xi * xi).sum(-1) + math.log(n) / beta + 0.5 * m2


@dataclass(frozen=True)
class HopfieldConfig:
    beta: float = 8.0
    steps: int = 1  # updates per auto-associative level


class ModernHopfield(nn.Module):
    """Auto-associative retrieval from patterns given at call time: forward(ξ (B, Q, d), X (B, N, d))."""

    def __init__(self, config: HopfieldConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = make_config(HopfieldConfig, config, overrides)

    def forward(self, xi: Tensor, patterns: Tensor) -> Tensor:
        for _ in range(self.config.steps):
            xi = hopfield_update(xi, patterns, patterns, self.config.beta)
        return xi


class HierarchicalHopfield(nn.Module):
    """A stack of stored Hopfield levels; forward(ξ (B, Q, d₀)) returns every level's output.

    `levels` is a sequence of (keys, values-or-None); `betas` one β per level (or one for all).
    With `learnable=True` the memories are parameters (trainable by backprop); otherwise buffers.
    """

    def __init__(
        self,
        levels: Sequence[tuple[Tensor, Tensor | None]],
        betas: float | Sequence[float] = 8.0,
        steps: int = 1,
        learnable: bool = False,
    ) -> None:
        super().__init__()
        if not levels:
            raise ValueError("need at least one level")
        self.betas = (
            [float(betas)] * len(levels) if isinstance(betas, int | float) else [float(b) for b in betas]
        )
        if len(self.betas) != len(levels):
            raise ValueError("one beta per level")
        self.steps = steps
        self.auto = []
        dim = levels[0][0].shape[-1]
        for i, (keys, values) in enumerate(levels):
            if keys.shape[-1] != dim:
                raise ValueError(f"level {i} keys have width {keys.shape[-1]}, expected {dim}")
            self.auto.append(values is None)
            vals = keys if values is None else values
            if vals.shape[0] != keys.shape[0]:
                raise ValueError(f"level {i}: keys and values need the same number of rows")
            dim = vals.shape[-1]
            for name, t in (("keys", keys), ("values", vals)):
                if learnable:
                    self.register_parameter(f"{name}{i}", nn.Parameter(t.clone()))
                else:
                    self.register_buffer(f"{name}{i}", t.clone())

    def forward(self, xi: Tensor) -> list[Tensor]:
        outs = []
        for i, beta in enumerate(self.betas):
            keys, values = getattr(self, f"keys{i}"), getattr(self, f"values{i}")
            for _ in range(self.steps if self.auto[i] else 1):
                xi = hopfield_update(xi, keys, values, beta)
            outs.append(xi)
        return outs
