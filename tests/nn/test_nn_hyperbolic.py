"""Poincaré-ball maps against closed-form identities; hyperbolic attention against its Euclidean limit."""

import math

import pytest
import torch

from wasm_torch.nn.hyperbolic import (
    HyperbolicAttention,
    conformal_factor,
    dist,
    einstein_midpoint,
    expmap,
    expmap0,
    frechet_mean,
    logmap,
    pairwise_dist,
)

C = 0.7


def ball_points(n, d, seed, radius=0.9):
    """Random points strictly inside the ball of curvature −C, norms up to radius/√C."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    r = radius * torch.rand(n, 1, generator=g, dtype=torch.float64) / math.sqrt(C)
    return x / x.norm(dim=-1, keepdim=True) * r


def arcosh_dist(x, y, c):
    """Textbook Poincaré distance, written independently of the module."""
    num = 2 * c * ((x - y) ** 2).sum(-1)
    den = (1 - c * (x**2).sum(-1)) * (1 - c * (y**2).sum(-1))
    return torch.acosh(1 + num / den) / math.sqrt(c)


def test_exp_and_log_are_inverse_away_from_origin():
    x, y = ball_points(50, 6, 0), ball_points(50, 6, 1)
    torch.testing.assert_close(expmap(x, logmap(x, y, C), C), y)
    v = 0.3 * torch.randn(50, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(logmap(x, expmap(x, v, C), C), v)


def test_riemannian_norm_of_log_is_the_distance():
    # ‖log_x y‖_x = λ_x ‖log_x y‖ = d(x, y); this fails with λ = 1/(1 − c‖x‖²)
    x, y = ball_points(50, 5, 3), ball_points(50, 5, 4)
    lam = conformal_factor(x, C).squeeze(-1)
    torch.testing.assert_close(lam * logmap(x, y, C).norm(dim=-1), arcosh_dist(x, y, C))
    torch.testing.assert_close(dist(x, y, C), arcosh_dist(x, y, C))
    torch.testing.assert_close(pairwise_dist(x[:7], y[:9], C), arcosh_dist(x[:7, None], y[None, :9], C))


def test_exp_has_unit_speed_in_the_riemannian_metric():
    # d/dt exp_x(t v) at t = 0 is v, and d(x, exp_x(v)) = λ_x ‖v‖
    x = ball_points(20, 4, 5)
    v = torch.randn(20, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    h = 1e-6
    deriv = (expmap(x, h * v, C) - expmap(x, -h * v, C)) / (2 * h)
    torch.testing.assert_close(deriv, v, rtol=1e-6, atol=1e-6)
    small = 0.05 * v
    lam = conformal_factor(x, C).squeeze(-1)
    torch.testing.assert_close(arcosh_dist(x, expmap(x, small, C), C), lam * small.norm(dim=-1))
    torch.testing.assert_close(expmap(torch.zeros_like(v), small, C), expmap0(small, C))


def test_einstein_midpoint_of_two_points_is_the_geodesic_midpoint():
    a, b = ball_points(30, 5, 7), ball_points(30, 5, 8)
    pts = torch.stack([a, b], dim=1)  # (30, 2, 5)
    w = torch.full((30, 1, 2), 0.5, dtype=torch.float64)
    m = einstein_midpoint(w, pts, C).squeeze(1)
    dab = arcosh_dist(a, b, C)
    torch.testing.assert_close(arcosh_dist(m, a, C), dab / 2)
    torch.testing.assert_close(arcosh_dist(m, b, C), dab / 2)


def test_frechet_mean_is_a_stationary_point_and_a_minimum():
    v = ball_points(8, 4, 9, radius=0.8).unsqueeze(0)  # (1, 8, 4)
    w = torch.softmax(
        torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(10), dtype=torch.float64), dim=-1
    )
    m = frechet_mean(w, v, C, iters=60)  # (1, 3, 4)
    grad = (w.unsqueeze(-1) * logmap(m.unsqueeze(-2), v.unsqueeze(-3), C)).sum(-2)
    assert grad.abs().max() < 1e-9

    def objective(p):
        return (w * arcosh_dist(p.unsqueeze(-2), v.unsqueeze(-3), C) ** 2).sum(-1)

    g = torch.Generator().manual_seed(11)
    for _ in range(20):
        other = expmap(m, 0.05 * torch.randn(m.shape, generator=g, dtype=torch.float64), C)
        assert (objective(other) > objective(m)).all()
    assert (objective(einstein_midpoint(w, v, C)) >= objective(m) - 1e-12).all()


@pytest.mark.parametrize("aggregation", ["einstein", "frechet"])
def test_attention_reduces_to_euclidean_attention_as_curvature_vanishes(aggregation):
    c = 1e-9
    g = torch.Generator().manual_seed(12)
    q, k, v = (0.5 * torch.randn(2, 6, 3, generator=g, dtype=torch.float64) for _ in range(3))
    att = HyperbolicAttention(
        dim=3, curvature=c, temperature=0.7, aggregation=aggregation, project_inputs=False, frechet_iters=3
    )
    w = torch.softmax(-2 * torch.cdist(q, k) / 0.7, dim=-1)  # d_c → 2‖x − y‖ as c → 0
    torch.testing.assert_close(att(q, k, v), w @ v, rtol=1e-6, atol=1e-6)


def test_attention_fast_path_equals_mobius_reference_with_mask_and_causal():
    torch.manual_seed(13)
    fast = HyperbolicAttention(dim=8, curvature=C, causal=True).double()
    ref = HyperbolicAttention(fast.config, reference=True).double()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(3, 10, 8, dtype=torch.float64)
    keep = torch.rand(3, 10, 10) > 0.3
    torch.testing.assert_close(fast(x, mask=keep), ref(x, mask=keep))
    out = fast(x)
    assert (out.norm(dim=-1) < 1 / math.sqrt(C)).all()
    torch.testing.assert_close(out[:, 0], expmap0(fast.v_proj(x[:, 0]), C))  # causal: token 0 sees itself
    for b in range(3):
        torch.testing.assert_close(out[b : b + 1], fast(x[b : b + 1]))


def test_attention_is_trainable():
    torch.manual_seed(14)
    att = HyperbolicAttention(dim=4, aggregation="frechet", frechet_iters=5)
    x = torch.randn(2, 5, 4)
    att(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in att.parameters())


@pytest.mark.parametrize("aggregation,tol", [("einstein", 1e-5), ("frechet", 1e-4)])
def test_float32_is_accurate_near_the_boundary(aggregation, tol):
    # points at norm 0.99. Two float32 traps live here: the Lorentz factor 1/√(1 − c‖k‖²) in the Klein model
    # and ‖x − y‖² expanded as ‖x‖² + ‖y‖² − 2⟨x, y⟩ both cancel catastrophically (errors ~1e-4 … 5e-2)
    g = torch.Generator().manual_seed(15)
    x = torch.randn(2, 12, 8, generator=g, dtype=torch.float64)
    x = 0.99 * x / x.norm(dim=-1, keepdim=True)
    att = HyperbolicAttention(
        dim=8, curvature=1.0, aggregation=aggregation, project_inputs=False, frechet_iters=5
    )
    assert (att(x.float()).double() - att(x)).abs().max() < tol
    d64 = pairwise_dist(x, x, 1.0)
    assert (pairwise_dist(x.float(), x.float(), 1.0).double() - d64).abs().max() < 1e-4
