"""MoE attention: experts against F.scaled_dot_product_attention, capacity by explicit counting,
load-balancing loss closed form and a router that learns to balance."""

import math

import pytest
import torch
import torch.nn.functional as F

from wasm_torch.nn.moe import MoEAttention, MoEConfig


def expert_oracle(m, x, e, causal):
    k, v = m.k_proj(x), m.v_proj(x)
    return F.scaled_dot_product_attention(x @ m.w_q[e], k, v, is_causal=causal) @ m.w_o[e]


def test_single_expert_is_plain_attention():
    torch.manual_seed(0)
    m = MoEAttention(dim=12, experts=1, top_k=1, head_dim=6, capacity_factor=1.0).double()
    x = torch.randn(3, 8, 12, dtype=torch.float64)
    torch.testing.assert_close(m(x), expert_oracle(m, x, 0, False))


@pytest.mark.parametrize("causal", [False, True])
def test_gated_sum_of_chosen_experts_without_capacity_limit(causal):
    torch.manual_seed(1)
    m = MoEAttention(dim=16, experts=4, top_k=2, head_dim=8, capacity_factor=100.0, causal=causal).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    probs = torch.softmax(x @ m.router.weight.T, -1)
    expected = torch.zeros_like(x)
    outs = [expert_oracle(m, x, e, causal) for e in range(4)]
    for b in range(2):
        for t in range(9):
            p, idx = probs[b, t].sort(descending=True)
            for j in range(2):
                expected[b, t] += p[j] / p[:2].sum() * outs[idx[j]][b, t]
    torch.testing.assert_close(m(x), expected)
    ref = MoEAttention(m.config, reference=True).double()
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(ref(x), expected)


def test_capacity_drops_later_tokens_first_choices_first():
    torch.manual_seed(2)
    cfg = MoEConfig(dim=8, experts=3, top_k=2, head_dim=4, capacity_factor=0.6)
    m = MoEAttention(cfg).double()
    with torch.no_grad():
        m.router.weight[0] += 2.0  # make expert 0 popular so that it overflows
    x = torch.randn(2, 15, 8, dtype=torch.float64).abs()
    r = m.route(x)
    cap = cfg.capacity(15)
    assert cap == math.ceil(0.6 * 15 * 2 / 3)
    for b in range(2):
        load = [0, 0, 0]
        for choice in range(2):
            for t in range(15):
                e = int(r.chosen[b, t, choice])
                expect_kept = load[e] < cap
                load[e] += expect_kept
                assert bool(r.kept[b, t, choice]) == expect_kept
        assert max(load) == cap  # the limit binds in this setup
    per_expert = (r.gates > 0).sum(1)
    assert (per_expert <= cap).all()
    ref = MoEAttention(cfg, reference=True).double()
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x), ref(x))


def test_load_balancing_loss_closed_form():
    torch.manual_seed(3)
    m = MoEAttention(dim=8, experts=4, top_k=1, head_dim=4)
    with torch.no_grad():
        m.router.weight.zero_()
    x = torch.randn(2, 10, 8)
    # uniform probabilities: L = E · Σ_e f_e · (1/E) = Σ_e f_e = 1 whatever the assignment
    assert m.route(x).aux_loss.item() == pytest.approx(1.0)
    with torch.no_grad():
        m.router.weight[2] = 50.0 * x.mean((0, 1)).sign()  # collapse onto expert 2
    x = x.abs() * x.mean((0, 1)).sign()
    r = m.route(x)
    f2, p2 = 1.0, r.probs[..., 2].mean().item()
    assert r.aux_loss.item() == pytest.approx(4 * f2 * p2, rel=1e-5)
    assert r.aux_loss.item() > 3.9  # → E when everything goes to one expert


@pytest.fixture
def one_thread():
    # 200 optimiser steps on tiny tensors: intra-op threads only add overhead
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_router_learns_to_balance_with_aux_loss(one_thread):
    torch.manual_seed(4)
    m = MoEAttention(dim=8, experts=4, top_k=1, head_dim=4, capacity_factor=4.0)
    with torch.no_grad():
        m.router.weight.normal_(0, 0.1)
        m.router.weight[0, 0] += 3.0
    x = torch.randn(8, 16, 8)
    x[..., 0] = 1.0  # a constant feature: expert 0 starts out preferred by most tokens
    opt = torch.optim.SGD(m.router.parameters(), lr=0.5)
    before = m.route(x)
    for _ in range(200):
        opt.zero_grad()
        m.route(x).aux_loss.backward()
        opt.step()
    after = m.route(x)
    assert before.aux_loss.item() > 1.5
    assert after.aux_loss.item() < 1.1
    share = torch.bincount(after.chosen.flatten(), minlength=4) / after.chosen.numel()
    assert share.max() < 0.4


def test_jitter_only_in_training_and_batch_independent():
    torch.manual_seed(5)
    m = MoEAttention(dim=8, experts=4, top_k=2, head_dim=4, jitter=0.1).eval()
    x = torch.randn(3, 6, 8)
    torch.testing.assert_close(m(x), m(x))
    for b in range(3):
        torch.testing.assert_close(m(x[b : b + 1]), m(x)[b : b + 1])
    m.train()
    assert not torch.allclose(m.route(x).probs, m.route(x).probs)
