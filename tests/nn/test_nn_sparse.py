"""Sparse Transformer patterns against the paper's set definitions and naive masked attention."""

import pytest
import torch

from wasm_torch.nn.sparse import SparseAttention, SparseConfig, density, sparse_index, sparse_mask


def paper_mask(t, pattern, l, c, causal):
    rows = []
    for i in range(t):
        row = []
        for j in range(t):
            if pattern == "strided":
                d = i - j if causal else abs(i - j)
                ok = 0 <= d <= l or d % l == 0
            else:
                ok = j // l == i // l or j % l in range(l - c, l)
            row.append(ok and (j <= i or not causal))
        rows.append(row)
    return torch.tensor(rows)


def naive(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ v


CASES = [
    ("strided", 4, 1, 23),
    ("strided", 5, 1, 16),
    ("fixed", 4, 1, 23),
    ("fixed", 6, 2, 30),
    ("fixed", 3, 3, 10),
    ("strided", 1, 1, 7),
]


@pytest.mark.parametrize("pattern,l,c,t", CASES)
@pytest.mark.parametrize("causal", [True, False])
def test_masks_and_outputs_match_the_paper_definition(pattern, l, c, t, causal):
    cfg = SparseConfig(pattern=pattern, stride=l, summary=c, causal=causal)
    expected_mask = paper_mask(t, pattern, l, c, causal)
    torch.testing.assert_close(sparse_mask(t, cfg), expected_mask)
    idx, valid = sparse_index(t, cfg)
    dense_from_index = torch.zeros(t, t, dtype=torch.long)
    dense_from_index.scatter_add_(1, idx, valid.long())
    torch.testing.assert_close(dense_from_index, expected_mask.long())  # each key exactly once
    gen = torch.Generator().manual_seed(t + l)
    q, k, v = (torch.randn(2, 2, t, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    expected = naive(q, k, v, expected_mask)
    torch.testing.assert_close(SparseAttention(cfg)(q, k, v), expected)
    torch.testing.assert_close(SparseAttention(cfg, reference=True)(q, k, v), expected)


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
def test_two_hops_reach_every_earlier_position(pattern):
    t = 64
    m = sparse_mask(t, SparseConfig(pattern=pattern, stride=8)).double()
    reach = (m @ m) > 0
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    assert (reach == causal).all()
    assert not (m.bool() == causal).all()  # …while one hop does not


def test_density_matches_closed_form_and_falls_as_one_over_sqrt_t():
    for t, l in ((1024, 32), (4096, 64)):
        cfg = SparseConfig(pattern="strided", stride=l)
        # row i keeps min(i, l) + 1 window keys plus ⌊i/l⌋ − 1 further column keys
        pairs = sum(min(i, l) + 1 + max(0, i // l - 1) for i in range(t))
        assert density(t, cfg) == pytest.approx(pairs / (t * (t + 1) / 2))
    d1 = density(1024, SparseConfig(stride=32))
    d2 = density(4096, SparseConfig(stride=64))
    assert d2 / d1 == pytest.approx(0.5, abs=0.02)  # l = √T: density ∝ 1/√T


def test_three_dim_inputs():
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(3, 19, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    cfg = SparseConfig(pattern="fixed", stride=4, summary=2)
    torch.testing.assert_close(
        SparseAttention(cfg)(q, k, v), naive(q, k, v, paper_mask(19, "fixed", 4, 2, True))
    )
