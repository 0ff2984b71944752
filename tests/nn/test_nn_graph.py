"""GCN / GAT / GraphSAGE against PyTorch Geometric's GCNConv / GATConv / SAGEConv with the same weights."""

import pytest
import torch
import torch_geometric.nn as pyg_nn  # pinned in requirements-dev.txt: missing means fail, not skip

from wasm_torch.nn.graph import GAT, GCN, GraphSAGE, edge_index_to_adj


def random_graph(n, e, seed, self_loops=True):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(n * n, generator=g)[:e]  # distinct directed edges
    src, dst = pairs // n, pairs % n
    if not self_loops:
        keep = src != dst
        src, dst = src[keep], dst[keep]
    return torch.stack([src, dst]), torch.rand(src.shape[0], generator=g, dtype=torch.float64) + 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gcn_matches_pyg(seed):
    n = 12
    ei, w = random_graph(n, 30, seed)  # directed, some self-loops, usually isolated nodes too
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    torch.manual_seed(seed)
    ref = pyg_nn.GCNConv(5, 7).double()
    with torch.no_grad():
        ref.bias.normal_()
    ours = GCN(in_features=5, out_features=7).double()
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x, edge_index_to_adj(ei, n)), ref(x, ei))
    torch.testing.assert_close(ours(x, edge_index_to_adj(ei, n, w)), ref(x, ei, w))


@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("seed", [0, 3])
def test_gat_matches_pyg(concat, seed):
    n = 10
    ei, _ = random_graph(n, 25, seed)
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    torch.manual_seed(seed)
    ref = pyg_nn.GATConv(6, 4, heads=3, concat=concat).double().eval()
    with torch.no_grad():
        ref.bias.normal_()
    ours = GAT(in_features=6, out_features=4, heads=3, concat=concat).double()
    ours.load_state_dict(ref.state_dict())
    expected, (ei_sl, alpha_ref) = ref(x, ei, return_attention_weights=True)
    torch.testing.assert_close(ours(x, edge_index_to_adj(ei, n)), expected)
    alpha, _ = ours.attention(x, edge_index_to_adj(ei, n))  # (H, N_dst, N_src)
    torch.testing.assert_close(alpha[:, ei_sl[1], ei_sl[0]].T, alpha_ref)


@pytest.mark.parametrize("aggr", ["mean", "max", "sum"])
@pytest.mark.parametrize("normalize", [False, True])
def test_sage_matches_pyg(aggr, normalize):
    n = 11
    ei, _ = random_graph(n, 28, 4)
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.manual_seed(6)
    ref = pyg_nn.SAGEConv(5, 3, aggr=aggr, normalize=normalize).double()
    ours = GraphSAGE(in_features=5, out_features=3, aggr=aggr, normalize=normalize).double()
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x, edge_index_to_adj(ei, n)), ref(x, ei))


def test_batched_graphs_match_pyg_graph_by_graph():
    n, b = 9, 4
    graphs = [random_graph(n, 20, 10 + i) for i in range(b)]
    x = torch.randn(b, n, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    adj = torch.stack([edge_index_to_adj(ei, n) for ei, _ in graphs])  # (B, N, N)
    torch.manual_seed(8)
    pairs = [
        (pyg_nn.GCNConv(5, 4), GCN(in_features=5, out_features=4)),
        (pyg_nn.GATConv(5, 2, heads=2), GAT(in_features=5, out_features=2, heads=2)),
        (pyg_nn.SAGEConv(5, 4), GraphSAGE(in_features=5, out_features=4)),
    ]
    for ref, ours in pairs:
        ref, ours = ref.double().eval(), ours.double()
        ours.load_state_dict(ref.state_dict())
        out = ours(x, adj)
        for i, (ei, _) in enumerate(graphs):
            torch.testing.assert_close(out[i], ref(x[i], ei))


def test_gcn_isolated_node_and_width_change():
    x = torch.randn(3, 4, dtype=torch.float64)
    adj = torch.zeros(3, 3, dtype=torch.float64)
    adj[1, 0] = 1.0  # 0 → 1; node 2 isolated
    torch.manual_seed(9)
    gcn = GCN(in_features=4, out_features=6).double()
    out = gcn(x, adj)
    assert out.shape == (3, 6)
    torch.testing.assert_close(out[2], gcn.lin(x[2]) + gcn.bias)  # only its own self-loop, weight 1/1
