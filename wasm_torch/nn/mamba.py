"""Mamba selective state-space mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective
State Spaces"), the `Mamba` block of the reference implementation.

    [x; z] = W_in u,    x̃ = SiLU(causal depthwise conv_K(x) + b)
    Δ = softplus(W_Δ (W_r x̃) + b_Δ),   B = W_B x̃,   C = W_C x̃         (input-dependent, per token)
    A = −exp(A_log)                      (so every discretised decay exp(Δ A) lies in (0, 1))
    h_t = exp(Δ_t A) ⊙ h_{t−1} + Δ_t B_t x̃_t,      y_t = C_t · h_t + D ⊙ x̃_t
    out = W_out (y ⊙ SiLU(z))

Shapes: u (B, T, d_model); x, z, Δ (B, T, d_inner); h (B, d_inner, d_state). Initialisation follows the paper
(S4D-real A_log = log(1..N), Δ bias = softplus⁻¹ of a log-uniform dt in [dt_min, dt_max], D = 1).
The fast path computes the scan in parallel within chunks, h_t = e^{S_t − S_{t0}} h_{t0} + Σ_s e^{S_t − S_s} Δ_s B_s x̃_s
with S the cumulative sum of Δ A; `reference=True` runs the sequential recurrence with `F.conv1d`. `step` is
the O(1)-per-token recurrent form (it keeps the last K − 1 conv inputs) and equals `forward` token by token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._util import make_config


@dataclass(frozen=True)
class MambaConfig:
    d_model: int = 64
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None → ⌈d_model / 16⌉
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False
    chunk: int = 16  # chunk length of the parallel scan

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def rank(self) -> int:
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.d_model / 16)


class MambaState:
    """Recurrent state: the last K − 1 conv inputs (B, d_inner, K−1) and the SSM state (B, d_inner, d_state)."""

    def __init__(self, conv: Tensor, ssm: Tensor) -> None:
        self.conv = conv
        self.ssm = ssm


class Mamba(nn.Module):
    """Selective SSM mixer (see module docstring). `forward` (B, T, d_model) → (B, T, d_model)."""

    def __init__(self, config: MambaConfig | None = None, reference: bool = False, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = make_config(MambaConfig, config, overrides)
        self.reference = reference
        di, n, r = cfg.d_inner, cfg.d_state, cfg.rank
        self.in_proj = nn.Linear(cfg.d_model, 2 * di, bias=cfg.bias)
        self.conv1d = nn.Conv1d(di, di, cfg.d_conv, groups=di, padding=cfg.d_conv - 1, bias=cfg.conv_bias)
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, di, bias=True)
        self.out_proj = nn.Linear(di, cfg.d_model, bias=cfg.bias)
        with torch.no_grad():
            nn.init.uniform_(self.dt_proj.weight, -(r**-0.5), r**-0.5)
            dt = torch.exp(
                torch.rand(di) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min)
            )
            dt = dt.clamp(min=cfg.dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1)
        )  # (di, N)
        self.D = nn.Parameter(torch.ones(di))

    def initial_state(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> MambaState:
        cfg = self.config
        dtype = dtype or self.A_log.dtype
        return MambaState(
            torch.zeros(batch, cfg.d_inner, cfg.d_conv - 1, device=device, dtype=dtype),
            torch.zeros(batch, cfg.d_inner, cfg.d_state, device=device, dtype=dtype),
        )

    def _ssm_inputs(self, xc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Δ (…, di), B (…, N), C (…, N) from the conv output x̃ (…, di)."""
        r, n = self.config.rank, self.config.d_state
        dbc = self.x_proj(xc)
        dt = F.softplus(self.dt_proj(dbc[..., :r]))
        return dt, dbc[..., r : r + n], dbc[..., r + n :]

    def _conv(self, x: Tensor, conv_state: Tensor | None) -> tuple[Tensor, Tensor]:
        """Causal depthwise conv by K shifted slices. x (B, T, di) → (x̃ before SiLU, last K−1 inputs)."""
        k = self.config.d_conv
        b, t, di = x.shape
        prev = (
            conv_state.transpose(1, 2) if conv_state is not None else x.new_zeros(b, k - 1, di)
        )  # (B, K−1, di)
        xp = torch.cat([prev, x], dim=1)  # (B, T+K−1, di)
        w = self.conv1d.weight.squeeze(1)  # (di, K)
        out = sum(xp[:, j : j + t] * w[:, j] for j in range(k))  # (B, T, di)
        if self.conv1d.bias is not None:
            out = out + self.conv1d.bias
        return out, xp[:, t:].transpose(1, 2)  # new conv state (B, di, K−1)

    def forward(self, u: Tensor) -> Tensor:
        return self.forward_with_state(u)[0]

    def forward_with_state(self, u: Tensor, state: MambaState | None = None) -> tuple[Tensor, MambaState]:
        """Run a whole sequence starting from `state` (zeros if None); returns the output and final state."""
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, T, di) each
        if self.reference and state is None:
            xc = self.conv1d(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)  # (B, T, di)
            conv_state = self._conv(x, None)[1]
        else:
            xc, conv_state = self._conv(x, state.conv if state is not None else None)
        xc = F.silu(xc)
        dt, bm, cm = self._ssm_inputs(xc)
        a = -torch.exp(self.A_log.to(u.dtype))  # (di, N), strictly negative
        h0 = state.ssm if state is not None else u.new_zeros(u.shape[0], *a.shape)
        scan = self._scan_sequential if self.reference else self._scan_chunked
        y, h = scan(xc, dt, bm, cm, a, h0)
        y = (y + xc * self.D) * F.silu(z)
        return self.out_proj(y), MambaState(conv_state, h)

    @staticmethod
    def _scan_sequential(
        xc: Tensor, dt: Tensor, bm: Tensor, cm: Tensor, a: Tensor, h: Tensor
    ) -> tuple[Tensor, Tensor]:
        ys = []
        for t in range(xc.shape[1]):
            da = torch.exp(dt[:, t, :, None] * a)  # (B, di, N)
            h = da * h + (dt[:, t] * xc[:, t])[:, :, None] * bm[:, t, None, :]
            ys.append((h * cm[:, t, None, :]).sum(-1))  # (B, di)
        return torch.stack(ys, dim=1), h

    def _scan_chunked(
        self, xc: Tensor, dt: Tensor, bm: Tensor, cm: Tensor, a: Tensor, h: Tensor
    ) -> tuple[Tensor, Tensor]:
        ys = []
        t_all = xc.shape[1]
        for c0 in range(0, t_all, self.config.chunk):
            c1 = min(c0 + self.config.chunk, t_all)
            n = c1 - c0
            s = torch.cumsum(dt[:, c0:c1, :, None] * a, dim=1)  # S_t = Σ_{r≤t} Δ_r A, (B, L, di, N)
            diff = s[:, :, None] - s[:, None, :]  # S_t − S_s, (B, Lt, Ls, di, N)
            lower = torch.ones(n, n, dtype=torch.bool, device=xc.device).tril()[None, :, :, None, None]
            decay = torch.exp(torch.where(lower, diff, torch.full_like(diff, float("-inf"))))
            dbx = (dt[:, c0:c1] * xc[:, c0:c1])[..., None] * bm[:, c0:c1, None, :]  # (B, L, di, N)
            hs = (decay * dbx[:, None]).sum(dim=2) + torch.exp(s) * h[:, None]  # (B, L, di, N)
            ys.append((hs * cm[:, c0:c1, None, :]).sum(-1))  # (B, L, di)
            h = hs[:, -1]
        return torch.cat(ys, dim=1), h

    def step(self, u_t: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        """One token: u_t (B, d_model) → (out_t (B, d_model), new state). Includes the convolution."""
        x, z = self.in_proj(u_t).chunk(2, dim=-1)  # (B, di)
        window = torch.cat([state.conv, x.unsqueeze(-1)], dim=-1)  # (B, di, K)
        xc = (window * self.conv1d.weight.squeeze(1)).sum(-1)
        if self.conv1d.bias is not None:
            xc = xc + self.conv1d.bias
        xc = F.silu(xc)
        dt, bm, cm = self._ssm_inputs(xc)
        a = -torch.exp(self.A_log.to(u_t.dtype))
        h = torch.exp(dt[..., None] * a) * state.ssm + (dt * xc)[..., None] * bm[:, None, :]
        y = ((h * cm[:, None, :]).sum(-1) + self.D * xc) * F.silu(z)
        return self.out_proj(y), MambaState(window[..., 1:], h)
