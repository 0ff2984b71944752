"""One small case per mechanism of wasm_torch.nn: (module, example inputs), deterministic.

The tests export and compile every case; bench/mechanisms.py times them at 100 tokens
(`mechanism_cases(batch=1, tokens=100, library_defaults=True)`).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import nn as W

DIM = 16


class Reconstruction(nn.Module):
    """The predictive-coding gate's reconstruction (its forward returns a record)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = W.PredictiveCodingGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x).reconstruction


def mechanism_cases(
    batch: int = 2, tokens: int = 12, nodes: int = 7, library_defaults: bool = False
) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """Every mechanism case. `library_defaults`: the flash tiles and Mamba chunk of the library
    instead of the tiny ones the tests use to exercise edges (use it for timing)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, tokens, DIM, generator=g)  # (B, T, D)
    q = torch.randn(batch, 2, tokens, 8, generator=g)  # (B, H, T, Dh)
    xg = torch.randn(batch, nodes, DIM, generator=g)  # node features (B, N, D)
    adj = (torch.rand(batch, nodes, nodes, generator=g) > (0.9 if nodes > 16 else 0.6)).float()
    phases = torch.rand(batch, nodes, generator=g) * 6.28
    slots = tokens // 4 * 4  # the workspace case views (B, 4, T/4, D)
    flash = W.FlashAttention(causal=True) if library_defaults else W.FlashAttention(block_q=5, block_k=4, causal=True)
    mamba = W.Mamba(d_model=DIM) if library_defaults else W.Mamba(d_model=DIM, chunk=5)
    return {
        "sdpa": (W.ScaledDotProductAttention(causal=True), (q, q, q)),
        "multihead": (W.MultiHeadAttention(dim=DIM, heads=2), (x,)),
        "hyperbolic": (W.HyperbolicAttention(dim=DIM), (x,)),
        "hyperbolic_frechet": (W.HyperbolicAttention(dim=DIM, aggregation="frechet", frechet_iters=2), (x,)),
        "performer_causal": (W.PerformerAttention(dim=DIM, heads=2, causal=True), (x,)),
        "flash_causal": (flash, (q, q, q)),
        "local_global": (W.LocalGlobalAttention(window=2, num_global=1), (q, q, q)),
        "moe": (W.MoEAttention(dim=DIM, head_dim=8), (x,)),
        "mamba": (mamba, (x,)),
        "differential": (W.DifferentialAttention(dim=DIM, heads=2, causal=True), (x,)),
        "sparse_fixed": (W.SparseAttention(pattern="fixed", stride=4), (q, q, q)),
        "hopfield": (W.ModernHopfield(steps=2), (x, x)),
        "hdc_attention": (W.HDCAttention(in_dim=DIM), (x, x, x)),
        "gcn": (W.GCN(in_features=DIM, out_features=4), (xg, adj)),
        "gat": (W.GAT(in_features=DIM, out_features=4, heads=2), (xg, adj)),
        "sage_max": (W.GraphSAGE(in_features=DIM, out_features=4, aggr="max"), (xg, adj)),
        "workspace": (W.GlobalWorkspace(dim=DIM), (x[:, :slots].reshape(batch, 4, slots // 4, DIM),)),
        "kuramoto": (W.KuramotoRouter(), (xg, phases, torch.ones_like(phases))),
        "predictive": (Reconstruction(), (x,)),
        "kwta": (W.KWinnerTakeAll(k=3), (x,)),
        "btsp_recall": (W.BTSPLayer(in_features=DIM, out_features=4), (x,)),
        "eprop_inference": (W.EPropLIF(n_in=DIM, n_rec=8, n_out=2), (x,)),
    }
