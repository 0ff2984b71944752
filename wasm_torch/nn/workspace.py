"""Global workspace: a capacity-limited buffer that specialist modules compete to write into and that is
broadcast back to all of them.

Global Workspace Theory (Baars 1988, "A Cognitive Theory of Consciousness"; Dehaene, Kerszberg & Changeux
1998), as a neural module after Goyal et al. 2022, "Coordination Among Neural Modules Through a Shared
Global Workspace" (ICLR). Per step, for a batch of workspaces with S slots (S ∈ [4, 7], the span of working
memory, Miller 1956 / Cowan 2001):

    s_old ← decay · s_old                        (items fade unless re-written)
    s_new = σ(w_sᵀ c_m + b) or given             (salience of each candidate c_m)
    drop every item with salience < min_salience
    slots ← the S most salient of {old items} ∪ {candidates}     (competition; a newcomer evicts the
                                                                   weakest item only if it is stronger)
    broadcast_m = softmax(q_m K_slotsᵀ / √d + log s_slots) V_slots over occupied slots (zeros when empty)

The log-salience term makes stronger items louder in the broadcast and lets the salience head learn.

Contents are (B, S, D) and saliences (B, S), 0 marking an empty slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ._util import make_config
from .attention import masked_softmax


@dataclass(frozen=True)
class WorkspaceConfig:
    dim: int = 64
    capacity: int = 5
    decay: float = 0.95
    min_salience: float = 0.1

    def __post_init__(self) -> None:
        if not 4 <= self.capacity <= 7:
            raise ValueError("workspace capacity must be between 4 and 7 slots")
        if not 0 < self.decay <= 1:
            raise ValueError("decay must be in (0, 1]")


class WorkspaceState(NamedTuple):
    contents: Tensor  # (B, S, D)
    salience: Tensor  # (B, S), 0 = empty


class GlobalWorkspace(nn.Module):
    """Salience competition into S slots with decay, and attention broadcast (see module docstring)."""

    def __init__(self, config: WorkspaceConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = make_config(WorkspaceConfig, config, overrides)
        self.salience_head = nn.Linear(cfg.dim, 1)
        self.q_proj = nn.Linear(cfg.dim, cfg.dim)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim)

    def initial_state(self, batch: int, dtype: torch.dtype = torch.float32) -> WorkspaceState:
        c = self.config
        return WorkspaceState(
            torch.zeros(batch, c.capacity, c.dim, dtype=dtype), torch.zeros(batch, c.capacity, dtype=dtype)
        )

    def salience(self, candidates: Tensor) -> Tensor:
        return torch.sigmoid(self.salience_head(candidates)).squeeze(-1)

    def write(
        self, state: WorkspaceState, candidates: Tensor, salience: Tensor | None = None
    ) -> WorkspaceState:
        """One competition step. candidates (B, M, D); salience (B, M) or None (use the learned head)."""
        c = self.config
        s_new = self.salience(candidates) if salience is None else salience
        s_old = state.salience * c.decay
        pool_s = torch.cat([s_old, s_new], dim=1)  # (B, S+M), incumbents first
        pool_s = torch.where(pool_s < c.min_salience, torch.zeros_like(pool_s), pool_s)
        pool_c = torch.cat([state.contents, candidates], dim=1)  # (B, S+M, D)
        top_s, idx = pool_s.topk(c.capacity, dim=1)  # (B, S)
        contents = pool_c.gather(1, idx.unsqueeze(-1).expand(-1, -1, pool_c.shape[-1]))  # (B, S, D)
        contents = contents * (top_s > 0).unsqueeze(-1)  # empty slots hold zeros
        return WorkspaceState(contents, top_s)

    def broadcast(self, state: WorkspaceState, queries: Tensor) -> Tensor:
        """What each module reads back: queries (B, M, D) → (B, M, D)."""
        q = self.q_proj(queries)
        k = self.k_proj(state.contents)  # (B, S, D)
        v = self.v_proj(state.contents)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.config.dim**-0.5  # (B, M, S)
        occupied = (state.salience > 0).unsqueeze(1)  # (B, 1, S)
        log_s = torch.log(state.salience.clamp_min(1e-30)).unsqueeze(1)  # (B, 1, S)
        return torch.matmul(masked_softmax(scores + log_s, occupied), v)

    def forward(
        self, candidates: Tensor, state: WorkspaceState | None = None, salience: Tensor | None = None
    ) -> tuple[Tensor, WorkspaceState]:
        """Run T steps: candidates (B, T, M, D), salience (B, T, M) or None → broadcasts (B, T, M, D), state."""
        b, t = candidates.shape[:2]
        state = self.initial_state(b, candidates.dtype) if state is None else state
        outs = []
        for i in range(t):
            state = self.write(state, candidates[:, i], None if salience is None else salience[:, i])
            outs.append(self.broadcast(state, candidates[:, i]))
        return torch.stack(outs, dim=1), state
