"""FAVOR+ against exact softmax attention: unbiased kernel, error shrinking with the number of features."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from wasm_torch.nn.attention import MultiHeadAttention
from wasm_torch.nn.performer import (
    PerformerAttention,
    favor_attention,
    orthogonal_gaussian,
    positive_features,
)

D = 16


def _qkv(seed=100, t=64, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    q = scale * torch.randn(4, t, D, generator=g, dtype=torch.float64)
    k = scale * torch.randn(4, t, D, generator=g, dtype=torch.float64)
    v = torch.randn(4, t, D, generator=g, dtype=torch.float64)
    return q, k, v


def test_features_are_orthogonal_with_gaussian_norms():
    om = orthogonal_gaussian(3 * D, D, torch.Generator().manual_seed(0))
    for b in range(3):
        blk = om[b * D : (b + 1) * D]
        unit = blk / blk.norm(dim=1, keepdim=True)
        torch.testing.assert_close(unit @ unit.T, torch.eye(D), atol=1e-5, rtol=0)
    big = orthogonal_gaussian(4096, D, torch.Generator().manual_seed(1))
    assert abs((big**2).sum(1).mean().item() - D) < 0.5  # E‖ω‖² = d for ω ~ N(0, I_d)


@pytest.mark.parametrize("orthogonal", [True, False])
def test_kernel_estimate_is_unbiased_for_softmax_temperature_sqrt_d(orthogonal):
    g = torch.Generator().manual_seed(0)
    q = 0.4 * torch.randn(8, D, generator=g, dtype=torch.float64)
    k = 0.4 * torch.randn(8, D, generator=g, dtype=torch.float64)
    om = orthogonal_gaussian(1 << 17, D, torch.Generator().manual_seed(1), orthogonal).double()
    est = (positive_features(q, om) * positive_features(k, om)).sum(-1)
    exact = torch.exp((q * k).sum(-1) / math.sqrt(D))
    assert ((est - exact) / exact).abs().max() < 0.02
    assert (positive_features(q, om) > 0).all()  # positive features: no negative "probabilities"


def relative_error(m, seeds=5, causal=False):
    q, k, v = _qkv()
    exact = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    errs = []
    for s in range(seeds):
        om = orthogonal_gaussian(m, D, torch.Generator().manual_seed(s)).double()
        approx = favor_attention(q, k, v, om, causal=causal)
        errs.append(((approx - exact).norm() / exact.norm()).item())
    return sum(errs) / len(errs)


def test_error_shrinks_as_features_grow():
    ms = [16, 64, 256, 1024, 4096, 16384]
    errs = [relative_error(m) for m in ms]
    assert all(a > b for a, b in itertools.pairwise(errs)), errs
    assert errs[-1] < 0.03, errs
    # Monte-Carlo rate: 64× more features should cut the error ~8×; allow 5×
    assert errs[-1] / errs[2] < 0.2, errs


def test_causal_error_shrinks_too():
    assert relative_error(4096, seeds=2, causal=True) < relative_error(64, seeds=2, causal=True) / 3


@pytest.mark.parametrize("causal", [False, True])
def test_linear_path_equals_quadratic_reference(causal):
    q, k, v = _qkv(seed=3, t=20)
    om = orthogonal_gaussian(32, D, torch.Generator().manual_seed(2)).double()
    torch.testing.assert_close(
        favor_attention(q, k, v, om, causal=causal),
        favor_attention(q, k, v, om, causal=causal, reference=True),
    )


def test_causal_output_ignores_the_future():
    q, k, v = _qkv(seed=4, t=12)
    om = orthogonal_gaussian(32, D, torch.Generator().manual_seed(3)).double()
    out = favor_attention(q, k, v, om, causal=True)
    k2, v2 = k.clone(), v.clone()
    k2[:, 7:] += 5.0
    v2[:, 7:] -= 3.0
    out2 = favor_attention(q, k2, v2, om, causal=True)
    torch.testing.assert_close(out[:, :7], out2[:, :7])
    assert not torch.allclose(out[:, 7:], out2[:, 7:])


def test_module_approaches_multihead_attention_with_same_weights():
    torch.manual_seed(5)
    mha = MultiHeadAttention(dim=32, heads=2).double()
    errs = []
    x = 0.3 * torch.randn(2, 24, 32, dtype=torch.float64)
    exact = mha(x)
    for m in (8, 2048):
        perf = PerformerAttention(dim=32, heads=2, num_features=m, seed=7).double()
        perf.load_state_dict({**mha.state_dict(), "omega": perf.omega})
        errs.append(((perf(x) - exact).norm() / exact.norm()).item())
        ref = PerformerAttention(perf.config, reference=True).double()
        ref.load_state_dict(perf.state_dict())
        torch.testing.assert_close(perf(x), ref(x))
    assert errs[1] < errs[0] / 4 and errs[1] < 0.05, errs


def test_redraw_is_seeded():
    a = PerformerAttention(num_features=8, seed=1)
    b = PerformerAttention(num_features=8, seed=1)
    torch.testing.assert_close(a.omega, b.omega)
    b.redraw(2)
    assert not torch.allclose(a.omega, b.omega)
