"""Graph layers on dense adjacency: GCN, GAT and GraphSAGE, equal to PyTorch Geometric's GCNConv, GATConv and
SAGEConv (same parameter names, so a PyG state dict loads directly).

Graphs are x (B, N, F) or (N, F) with adj (B, N, N) or (N, N), where adj[i, j] is the weight of the edge
j → i (row = target, as messages flow source → target in PyG). `edge_index_to_adj` converts an edge list.

GCN   (Kipf & Welling 2017):      X' = D̂^{-1/2} Â D̂^{-1/2} X Wᵀ + b,   Â = A with missing self-loops set to 1,
                                   D̂_ii = Σ_j Â_ij.
GAT   (Veličković et al. 2018):   e_ij = LeakyReLU_{0.2}(a_srcᵀ W x_j + a_dstᵀ W x_i), α_ij = softmax over
                                   j ∈ N(i) ∪ {i}, x'_i = ‖_h Σ_j α_ij^h W^h x_j + b (heads concatenated or
                                   averaged).
SAGE  (Hamilton et al. 2017):     x'_i = W_l · agg_{j∈N(i)} x_j + b + W_r x_i, agg ∈ {mean, max, sum}; empty
                                   neighbourhoods aggregate to 0; optional L2 normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._util import make_config
from .attention import masked_softmax


def edge_index_to_adj(edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None) -> Tensor:
    """(2, E) edge list (row 0 = source, row 1 = target) → dense (N, N) with adj[target, source] summed."""
    w = torch.ones(edge_index.shape[1]) if edge_weight is None else edge_weight
    adj = torch.zeros(num_nodes, num_nodes, dtype=w.dtype, device=w.device)
    return adj.index_put((edge_index[1], edge_index[0]), w, accumulate=True)


def _eye_like(adj: Tensor) -> Tensor:
    n = adj.shape[-1]
    return torch.eye(n, dtype=torch.bool, device=adj.device).expand(adj.shape)


@dataclass(frozen=True)
class GCNConfig:
    in_features: int = 64
    out_features: int = 64
    bias: bool = True


class GCN(nn.Module):
    """Graph convolution (see module docstring); parameters `lin.weight`, `bias` as in PyG."""

    def __init__(self, config: GCNConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = make_config(GCNConfig, config, overrides)
        self.lin = nn.Linear(cfg.in_features, cfg.out_features, bias=False)
        self.bias = nn.Parameter(torch.zeros(cfg.out_features)) if cfg.bias else None

    @staticmethod
    def normalized_adjacency(adj: Tensor) -> Tensor:
        eye = _eye_like(adj)
        diag = torch.diagonal(adj, dim1=-2, dim2=-1).unsqueeze(-1)  # (…, N, 1)
        a_hat = torch.where(eye & (diag == 0), torch.ones_like(adj), adj)  # add the missing self-loops
        deg = a_hat.sum(-1)  # (…, N)
        dinv = torch.where(deg > 0, deg.clamp_min(1e-30).rsqrt(), torch.zeros_like(deg))
        return dinv.unsqueeze(-1) * a_hat * dinv.unsqueeze(-2)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        out = torch.matmul(self.normalized_adjacency(adj.to(x.dtype)), self.lin(x))
        return out + self.bias if self.bias is not None else out


@dataclass(frozen=True)
class GATConfig:
    in_features: int = 64
    out_features: int = 16  # per head
    heads: int = 4
    concat: bool = True
    negative_slope: float = 0.2
    bias: bool = True


class GAT(nn.Module):
    """Graph attention (see module docstring); parameters `lin.weight`, `att_src`, `att_dst`, `bias` as in PyG.

    The adjacency is used as a mask (nonzero = edge); self-loops are always included.
    """

    def __init__(self, config: GATConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = make_config(GATConfig, config, overrides)
        h, c = cfg.heads, cfg.out_features
        self.lin = nn.Linear(cfg.in_features, h * c, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, h, c))
        self.att_dst = nn.Parameter(torch.empty(1, h, c))
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)
        self.bias = nn.Parameter(torch.zeros(h * c if cfg.concat else c)) if cfg.bias else None

    def attention(self, x: Tensor, adj: Tensor) -> tuple[Tensor, Tensor]:
        """Attention coefficients (…, H, N, N) (row i = target) and projected features (…, H, N, C)."""
        cfg = self.config
        xp = self.lin(x).unflatten(-1, (cfg.heads, cfg.out_features)).transpose(-3, -2)  # (…, H, N, C)
        a_src = (xp * self.att_src.squeeze(0).unsqueeze(-2)).sum(-1)  # (…, H, N)
        a_dst = (xp * self.att_dst.squeeze(0).unsqueeze(-2)).sum(-1)  # (…, H, N)
        e = F.leaky_relu(
            a_dst.unsqueeze(-1) + a_src.unsqueeze(-2), cfg.negative_slope
        )  # (…, H, N_dst, N_src)
        keep = ((adj != 0) | _eye_like(adj)).unsqueeze(-3)  # (…, 1, N, N)
        return masked_softmax(e, keep), xp

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        alpha, xp = self.attention(x, adj)
        out = torch.matmul(alpha, xp)  # (…, H, N, C)
        # concat: (…, N, H·C); otherwise the head mean (…, N, C)
        out = out.transpose(-3, -2).flatten(-2) if self.config.concat else out.mean(-3)
        return out + self.bias if self.bias is not None else out


@dataclass(frozen=True)
class SAGEConfig:
    in_features: int = 64
    out_features: int = 64
    aggr: Literal["mean", "max", "sum"] = "mean"
    normalize: bool = False
    root_weight: bool = True
    bias: bool = True

    def __post_init__(self) -> None:
        if self.aggr not in ("mean", "max", "sum"):
            raise ValueError(f"unknown aggregation {self.aggr!r}")


class GraphSAGE(nn.Module):
    """GraphSAGE (see module docstring); parameters `lin_l.weight`, `lin_l.bias`, `lin_r.weight` as in PyG.

    The adjacency counts edges (duplicates count twice for mean/sum, as in PyG); edge weights are ignored.
    """

    def __init__(self, config: SAGEConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = make_config(SAGEConfig, config, overrides)
        self.lin_l = nn.Linear(cfg.in_features, cfg.out_features, bias=cfg.bias)
        if cfg.root_weight:
            self.lin_r = nn.Linear(cfg.in_features, cfg.out_features, bias=False)

    def aggregate(self, x: Tensor, adj: Tensor) -> Tensor:
        a = adj.to(x.dtype)
        if self.config.aggr == "sum":
            return torch.matmul(a, x)
        if self.config.aggr == "mean":
            return torch.matmul(a, x) / a.sum(-1, keepdim=True).clamp_min(1)
        has = (a != 0).unsqueeze(-1)  # (…, N_dst, N_src, 1)
        vals = torch.where(has, x.unsqueeze(-3), torch.full_like(x.unsqueeze(-3), float("-inf")))
        m = vals.amax(-2)  # (…, N, F)
        return torch.where(m == float("-inf"), torch.zeros_like(m), m)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        out = self.lin_l(self.aggregate(x, adj))
        if self.config.root_weight:
            out = out + self.lin_r(x)
        return F.normalize(out, p=2.0, dim=-1) if self.config.normalize else out
