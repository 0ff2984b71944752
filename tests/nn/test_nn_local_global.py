"""Local-global attention against naive attention with a mask built position by position."""

import pytest
import torch

from wasm_torch.nn.local_global import LocalGlobalAttention, local_global_mask


def explicit_mask(t, w, g, causal):
    rows = []
    for i in range(t):
        row = []
        for j in range(t):
            ok = abs(i - j) <= w or j < g or i < g
            row.append(ok and (j <= i or not causal))
        rows.append(row)
    return torch.tensor(rows)


def naive(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, -1) @ v


@pytest.mark.parametrize("t,w,g", [(20, 3, 2), (17, 0, 1), (9, 5, 0), (12, 20, 3), (30, 2, 0)])
@pytest.mark.parametrize("causal", [False, True])
def test_fast_and_reference_match_naive(t, w, g, causal):
    gen = torch.Generator().manual_seed(t * 31 + w * 7 + g)
    q, k, v = (torch.randn(2, 3, t, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    m = explicit_mask(t, w, g, causal)
    torch.testing.assert_close(local_global_mask(t, w, g, causal), m)
    expected = naive(q, k, v, m)
    fast = LocalGlobalAttention(window=w, num_global=g, causal=causal)
    ref = LocalGlobalAttention(fast.config, reference=True)
    torch.testing.assert_close(fast(q, k, v), expected)
    torch.testing.assert_close(ref(q, k, v), expected)


def test_window_follows_each_token_not_the_middle():
    # perturbing a key far from token i (and not global) must not change token i's output
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 40, 4, generator=gen) for _ in range(3))
    att = LocalGlobalAttention(window=2, num_global=1)
    out = att(q, k, v)
    k2, v2 = k.clone(), v.clone()
    k2[:, 30] += 3
    v2[:, 30] += 3
    out2 = att(q, k2, v2)
    changed = (out - out2).abs().amax(-1).squeeze(0) > 0
    assert changed.nonzero().flatten().tolist() == [0, 28, 29, 30, 31, 32]  # global token 0 + window of 30


def test_three_dim_inputs_and_gradients():
    gen = torch.Generator().manual_seed(2)
    q, k, v = (
        torch.randn(2, 11, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3)
    )
    fast = LocalGlobalAttention(window=2, num_global=2, causal=True)
    ref = LocalGlobalAttention(fast.config, reference=True)
    torch.testing.assert_close(fast(q, k, v), ref(q, k, v))
    for a, b in zip(
        torch.autograd.grad(fast(q, k, v).sum(), (q, k, v)),
        torch.autograd.grad(ref(q, k, v).sum(), (q, k, v)),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
