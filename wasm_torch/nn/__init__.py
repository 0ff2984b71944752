"""`wasm_torch.nn`: attention, graph, nervous-system and plasticity mechanisms as batched PyTorch modules.

Every mechanism is a `torch.nn.Module` with a frozen config dataclass (pass a config or keyword overrides),
a docstring with its formula and paper, and — where a faster formulation exists — a readable reference path
behind `reference=True`. See docs/mechanisms.md for the formulas, defaults, test oracles and measured figures.
"""

from .attention import (
    MultiHeadAttention,
    MultiHeadConfig,
    ScaledDotProductAttention,
    SDPAConfig,
    causal_mask,
    masked_softmax,
    scaled_dot_product_attention,
)
from .btsp import BTSPConfig, BTSPLayer
from .differential import DifferentialAttention, DifferentialConfig
from .eprop import EPropConfig, EPropLIF
from .flash import FlashAttention, FlashConfig, flash_attention
from .graph import GAT, GCN, GATConfig, GCNConfig, GraphSAGE, SAGEConfig, edge_index_to_adj
from .hdc import DIM as HDC_DIM
from .hdc import HDCAttention, HDCAttentionConfig, HDCMemory, bind, bundle, permute, random_hypervectors
from .hopfield import HierarchicalHopfield, HopfieldConfig, ModernHopfield
from .hyperbolic import HyperbolicAttention, HyperbolicConfig
from .kwta import KWinnerTakeAll, KWTAConfig
from .local_global import LocalGlobalAttention, LocalGlobalConfig
from .mamba import Mamba, MambaConfig, MambaState
from .moe import MoEAttention, MoEConfig
from .oscillatory import KuramotoConfig, KuramotoRouter
from .performer import PerformerAttention, PerformerConfig
from .predictive import PredictiveCodingGate, PredictiveConfig
from .sparse import SparseAttention, SparseConfig
from .workspace import GlobalWorkspace, WorkspaceConfig

__all__ = [
    "GAT",
    "GCN",
    "HDC_DIM",
    "BTSPConfig",
    "BTSPLayer",
    "DifferentialAttention",
    "DifferentialConfig",
    "EPropConfig",
    "EPropLIF",
    "FlashAttention",
    "FlashConfig",
    "GATConfig",
    "GCNConfig",
    "GlobalWorkspace",
    "GraphSAGE",
    "HDCAttention",
    "HDCAttentionConfig",
    "HDCMemory",
    "HierarchicalHopfield",
    "HopfieldConfig",
    "HyperbolicAttention",
    "HyperbolicConfig",
    "KWTAConfig",
    "KWinnerTakeAll",
    "KuramotoConfig",
    "KuramotoRouter",
    "LocalGlobalAttention",
    "LocalGlobalConfig",
    "Mamba",
    "MambaConfig",
    "MambaState",
    "MoEAttention",
    "MoEConfig",
    "ModernHopfield",
    "MultiHeadAttention",
    "MultiHeadConfig",
    "PerformerAttention",
    "PerformerConfig",
    "PredictiveCodingGate",
    "PredictiveConfig",
    "SAGEConfig",
    "SDPAConfig",
    "ScaledDotProductAttention",
    "SparseAttention",
    "SparseConfig",
    "WorkspaceConfig",
    "bind",
    "bundle",
    "causal_mask",
    "edge_index_to_adj",
    "flash_attention",
    "masked_softmax",
    "permute",
    "random_hypervectors",
    "scaled_dot_product_attention",
]
