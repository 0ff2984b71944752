"""Differential attention against the paper's formula written with F.scaled_dot_product_attention."""

import math

import pytest
import torch
import torch.nn.functional as F

from wasm_torch.nn.differential import DifferentialAttention, DifferentialConfig


def paper_forward(m: DifferentialAttention, x, causal):
    """Ye et al. 2024, eq. (1)–(3), from the module's weights, using PyTorch's SDPA as the softmax oracle."""
    cfg = m.config
    h, d = cfg.heads, cfg.head_dim
    heads = []
    lam = (
        math.exp(float((m.lambda_q1 @ m.lambda_k1).detach()))
        - math.exp(float((m.lambda_q2 @ m.lambda_k2).detach()))
        + (0.8 - 0.6 * math.exp(-0.3 * (cfg.layer_index - 1)))
    )
    wq, wk, wv = m.q_proj.weight, m.k_proj.weight, m.v_proj.weight
    for i in range(h):
        q1 = x @ wq[2 * i * d : (2 * i + 1) * d].T
        q2 = x @ wq[(2 * i + 1) * d : (2 * i + 2) * d].T
        k1 = x @ wk[2 * i * d : (2 * i + 1) * d].T
        k2 = x @ wk[(2 * i + 1) * d : (2 * i + 2) * d].T
        v = x @ wv[2 * i * d : (2 * i + 2) * d].T
        diff = F.scaled_dot_product_attention(
            q1, k1, v, is_causal=causal
        ) - lam * F.scaled_dot_product_attention(q2, k2, v, is_causal=causal)
        normed = F.rms_norm(diff, (2 * d,), m.norm_weight, eps=cfg.norm_eps)
        heads.append((1 - cfg.lambda_init) * normed)
    return torch.cat(heads, dim=-1) @ m.o_proj.weight.T


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("layer", [1, 4])
def test_matches_paper_formula(causal, layer):
    torch.manual_seed(layer)
    m = DifferentialAttention(dim=48, heads=3, layer_index=layer, causal=causal, seed=layer).double()
    x = torch.randn(2, 9, 48, dtype=torch.float64)
    torch.testing.assert_close(m(x), paper_forward(m, x, causal))


def test_lambda_init_schedule_and_reparameterisation():
    assert DifferentialConfig(layer_index=1).lambda_init == pytest.approx(0.2)
    assert DifferentialConfig(layer_index=2).lambda_init == pytest.approx(0.8 - 0.6 * math.exp(-0.3))
    assert DifferentialConfig(layer_index=100).lambda_init == pytest.approx(0.8, abs=1e-9)
    m = DifferentialAttention(dim=16, heads=1)
    with torch.no_grad():
        for p in (m.lambda_q1, m.lambda_k1, m.lambda_q2, m.lambda_k2):
            p.zero_()
    assert m.lam().item() == pytest.approx(0.2)  # e⁰ − e⁰ + λ_init
    torch.manual_seed(1)
    fresh = DifferentialAttention(dim=16, heads=1, seed=1)
    fresh(torch.randn(1, 5, 16)).pow(2).sum().backward()  # λ is learned through its four vectors
    lam_params = (fresh.lambda_q1, fresh.lambda_k1, fresh.lambda_q2, fresh.lambda_k2)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lam_params)


def test_difference_map_rows_sum_to_one_minus_lambda_and_cancel_common_mode():
    torch.manual_seed(2)
    m = DifferentialAttention(dim=32, heads=2).double()
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    a1, a2 = m.attention_maps(x)
    lam = m.lam()
    torch.testing.assert_close((a1 - lam * a2).sum(-1), (1 - lam).expand(2, 2, 7))
    # tie the two maps: the common-mode part cancels and only (1 − λ)·A remains
    m = DifferentialAttention(dim=32, heads=2, layer_index=1000).double()
    with torch.no_grad():
        w = m.q_proj.weight.view(2, 2, 8, 32)
        w[:, 1] = w[:, 0]
        wk = m.k_proj.weight.view(2, 2, 8, 32)
        wk[:, 1] = wk[:, 0]
        m.lambda_q1.zero_()
        m.lambda_q2.zero_()
    a1, a2 = m.attention_maps(x)
    torch.testing.assert_close(a1, a2)
    assert ((a1 - m.lam() * a2) - 0.2 * a1).abs().max() < 1e-12


def test_batch_independence_and_mask():
    torch.manual_seed(3)
    m = DifferentialAttention(dim=16, heads=2, causal=True)
    x = torch.randn(3, 6, 16)
    full = m(x)
    for b in range(3):
        torch.testing.assert_close(full[b : b + 1], m(x[b : b + 1]))
    y = x.clone()
    y[:, 4:] += 1
    torch.testing.assert_close(m(y)[:, :4], full[:, :4])  # causal: the future cannot leak back
