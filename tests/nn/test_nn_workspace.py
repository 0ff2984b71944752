"""Global workspace: capacity limits, competition against a sorted-list oracle, closed-form decay, broadcast."""

import math

import pytest
import torch
import torch.nn.functional as F

from wasm_torch.nn.workspace import GlobalWorkspace, WorkspaceConfig


@pytest.mark.parametrize("cap", [3, 8])
def test_capacity_must_be_four_to_seven(cap):
    with pytest.raises(ValueError):
        WorkspaceConfig(capacity=cap)


def test_competition_matches_sorted_list_oracle():
    torch.manual_seed(0)
    cfg = WorkspaceConfig(dim=4, capacity=5, decay=0.9, min_salience=0.1)
    ws = GlobalWorkspace(cfg)
    g = torch.Generator().manual_seed(1)
    b, m, steps = 3, 4, 12
    cands = torch.randn(b, steps, m, 4, generator=g)
    sal = torch.rand(b, steps, m, generator=g) ** 2  # plenty below the threshold
    state = ws.initial_state(b)
    oracle = [[] for _ in range(b)]  # per batch element: list of (salience, content id)
    for t in range(steps):
        state = ws.write(state, cands[:, t], sal[:, t])
        for bi in range(b):
            pool = [(s * 0.9, cid) for s, cid in oracle[bi]]
            pool += [(float(sal[bi, t, j]), (t, j)) for j in range(m)]
            pool = [p for p in pool if p[0] >= 0.1]
            oracle[bi] = sorted(pool, key=lambda p: -p[0])[:5]
            got = sorted([float(s) for s in state.salience[bi] if s > 0], reverse=True)
            assert got == pytest.approx([p[0] for p in oracle[bi]], rel=1e-6)
            for s, (tt, j) in oracle[bi]:
                slot = int((state.salience[bi] - s).abs().argmin())
                torch.testing.assert_close(state.contents[bi, slot], cands[bi, tt, j])
            assert int((state.salience[bi] > 0).sum()) <= 5


def test_decay_closed_form_and_expiry():
    ws = GlobalWorkspace(dim=3, capacity=4, decay=0.8, min_salience=0.1)
    state = ws.initial_state(1)
    s0 = 0.9
    state = ws.write(state, torch.ones(1, 1, 3), torch.tensor([[s0]]))
    expiry = math.floor(math.log(0.1 / s0) / math.log(0.8)) + 1  # first n with s0·0.8ⁿ < 0.1
    for n in range(1, expiry + 2):
        state = ws.write(state, torch.zeros(1, 1, 3), torch.zeros(1, 1))
        alive = s0 * 0.8**n >= 0.1
        assert bool(state.salience.max() > 0) == alive == (n < expiry)
        if alive:
            assert state.salience.max().item() == pytest.approx(s0 * 0.8**n)


def test_weak_newcomer_does_not_evict_stronger_items():
    ws = GlobalWorkspace(dim=2, capacity=4, decay=1.0)
    state = ws.initial_state(1)
    state = ws.write(state, torch.eye(2).repeat(1, 2, 1), torch.tensor([[0.9, 0.8, 0.7, 0.6]]))
    before = state.salience.clone()
    state = ws.write(state, torch.full((1, 1, 2), 5.0), torch.tensor([[0.5]]))
    torch.testing.assert_close(state.salience, before)
    state = ws.write(state, torch.full((1, 1, 2), 5.0), torch.tensor([[0.65]]))
    assert sorted(state.salience[0].tolist(), reverse=True) == pytest.approx([0.9, 0.8, 0.7, 0.65])


def test_broadcast_is_salience_weighted_attention_over_occupied_slots():
    torch.manual_seed(2)
    ws = GlobalWorkspace(dim=6, capacity=6).double()
    g = torch.Generator().manual_seed(3)
    cands = torch.randn(2, 3, 6, generator=g, dtype=torch.float64)
    state = ws.write(
        ws.initial_state(2, torch.float64),
        cands,
        torch.tensor([[0.5, 0.7, 0.05], [0.3, 0.2, 0.9]], dtype=torch.float64),
    )
    q = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    bias = torch.where(state.salience > 0, state.salience.log(), float("-inf"))[:, None, :]
    expected = F.scaled_dot_product_attention(
        ws.q_proj(q), ws.k_proj(state.contents), ws.v_proj(state.contents), attn_mask=bias
    )
    torch.testing.assert_close(ws.broadcast(state, q), expected)
    empty = ws.initial_state(2, torch.float64)
    assert (ws.broadcast(empty, q) == 0).all()


def test_sequence_forward_with_learned_salience():
    torch.manual_seed(4)
    ws = GlobalWorkspace(dim=8, capacity=7)
    x = torch.randn(2, 5, 3, 8)
    out, state = ws(x)
    assert out.shape == (2, 5, 3, 8) and state.contents.shape == (2, 7, 8)
    out.sum().backward()
    assert ws.salience_head.weight.grad is not None
