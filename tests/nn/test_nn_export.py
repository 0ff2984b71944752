"""Every inference forward pass traces with torch.export (no data-dependent Python control flow) and the
exported program reproduces eager outputs — the precondition for compiling the mechanisms to wasm later."""

import pytest
import torch
from torch import nn

import wasm_torch.nn as W

B, T, D = 2, 12, 16


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, D, generator=g)
    q = torch.randn(B, 2, T, 8, generator=g)
    xg = torch.randn(B, 7, D, generator=g)
    adj = (torch.rand(B, 7, 7, generator=g) > 0.6).float()
    phases = torch.rand(B, 7, generator=g) * 6.28
    return x, q, xg, adj, phases


class _Reconstruction(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate = W.PredictiveCodingGate()

    def forward(self, x):
        return self.gate(x).reconstruction


def _cases():
    x, q, xg, adj, phases = _inputs()
    return {
        "sdpa": (W.ScaledDotProductAttention(causal=True), (q, q, q)),
        "multihead": (W.MultiHeadAttention(dim=D, heads=2), (x,)),
        "hyperbolic": (W.HyperbolicAttention(dim=D), (x,)),
        "hyperbolic_frechet": (W.HyperbolicAttention(dim=D, aggregation="frechet", frechet_iters=2), (x,)),
        "performer_causal": (W.PerformerAttention(dim=D, heads=2, causal=True), (x,)),
        "flash_causal": (W.FlashAttention(block_q=5, block_k=4, causal=True), (q, q, q)),
        "local_global": (W.LocalGlobalAttention(window=2, num_global=1), (q, q, q)),
        "moe": (W.MoEAttention(dim=D, head_dim=8), (x,)),
        "mamba": (W.Mamba(d_model=D, chunk=5), (x,)),
        "differential": (W.DifferentialAttention(dim=D, heads=2, causal=True), (x,)),
        "sparse_fixed": (W.SparseAttention(pattern="fixed", stride=4), (q, q, q)),
        "hopfield": (W.ModernHopfield(steps=2), (x, x)),
        "hdc_attention": (W.HDCAttention(in_dim=D), (x, x, x)),
        "gcn": (W.GCN(in_features=D, out_features=4), (xg, adj)),
        "gat": (W.GAT(in_features=D, out_features=4, heads=2), (xg, adj)),
        "sage_max": (W.GraphSAGE(in_features=D, out_features=4, aggr="max"), (xg, adj)),
        "workspace": (W.GlobalWorkspace(dim=D), (x[:, :12].reshape(B, 4, 3, D),)),
        "kuramoto": (W.KuramotoRouter(), (xg, phases, torch.ones_like(phases))),
        "predictive": (_Reconstruction(), (x,)),
        "kwta": (W.KWinnerTakeAll(k=3), (x,)),
        "btsp_recall": (W.BTSPLayer(in_features=D, out_features=4), (x,)),
        "eprop_inference": (W.EPropLIF(n_in=D, n_rec=8, n_out=2), (x,)),
    }


@pytest.mark.parametrize("name", sorted(_cases()))
def test_forward_exports_and_matches_eager(name):
    torch.manual_seed(1)
    module, args = _cases()[name]
    module.eval()
    program = torch.export.export(module, args)
    eager = module(*args)
    exported = program.module()(*args)
    if isinstance(eager, tuple):
        eager, exported = eager[0], exported[0]
    torch.testing.assert_close(exported, eager)
