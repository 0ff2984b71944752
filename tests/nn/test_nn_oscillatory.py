"""Kuramoto routing against closed forms: Adler locking / beat frequency, Kuramoto's r = √(1 − 2γ/K), gains."""

import math

import pytest
import torch

from wasm_torch.nn.oscillatory import KuramotoRouter, gain, order_parameter


@pytest.fixture
def one_thread():
    # thousands of tiny steps: intra-op threading only adds overhead (and noise on a loaded machine)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_gain_closed_form():
    theta = torch.tensor([[0.0, 0.0, math.pi, math.pi / 2]], dtype=torch.float64)
    g = gain(theta)[0]
    torch.testing.assert_close(g[0, 1], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(g[0, 2], torch.tensor(0.0, dtype=torch.float64), atol=1e-15, rtol=0)
    torch.testing.assert_close(g[0, 3], torch.tensor(0.5, dtype=torch.float64))
    rand = torch.rand(2, 7, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 6.3
    torch.testing.assert_close(gain(rand), (1 + torch.cos(rand[:, :, None] - rand[:, None, :])) / 2)


def test_route_passes_in_phase_and_blocks_anti_phase():
    theta = torch.tensor([[0.0, 0.0, math.pi, math.pi]], dtype=torch.float64)
    msgs = torch.tensor([[[1.0], [3.0], [100.0], [200.0]]], dtype=torch.float64)
    out = KuramotoRouter.route(msgs, theta)
    torch.testing.assert_close(out[0, :2, 0], torch.tensor([1.0, 1.0], dtype=torch.float64))  # (1 + 3)/4
    torch.testing.assert_close(
        out[0, 2:, 0], torch.tensor([75.0, 75.0], dtype=torch.float64)
    )  # (100 + 200)/4


@pytest.mark.parametrize("adjacency", [False, True])
def test_fast_coupling_equals_pairwise_reference(adjacency):
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(3, 9, generator=g, dtype=torch.float64) * 6.3
    a = (torch.rand(9, 9, generator=g) > 0.5).double() if adjacency else None
    fast, ref = KuramotoRouter(coupling=1.7), KuramotoRouter(coupling=1.7, reference=True)
    torch.testing.assert_close(fast.coupling_term(theta, a), ref.coupling_term(theta, a))
    pair = ref.coupling_term(theta, None)
    r, psi = order_parameter(theta)
    torch.testing.assert_close(
        pair, 1.7 * r[:, None] * torch.sin(psi[:, None] - theta)
    )  # mean-field identity


def test_two_oscillators_lock_at_arcsin_of_detuning(one_thread):
    # φ = θ₂ − θ₁ obeys dφ/dt = Δω − K sin φ: locks at φ* = arcsin(Δω/K) when |Δω| ≤ K
    m = KuramotoRouter(coupling=2.0, dt=0.01, wrap=False)
    theta = m.simulate(
        torch.tensor([[0.0, 2.5]], dtype=torch.float64), torch.tensor([[0.0, 1.0]], dtype=torch.float64), 3000
    )[:, -1]
    phi = torch.remainder(theta[0, 1] - theta[0, 0], 2 * math.pi)
    assert phi.item() == pytest.approx(math.asin(0.5), abs=1e-6)


def test_unlocked_pair_beats_at_adler_frequency(one_thread):
    # |Δω| > K: φ drifts with mean angular velocity √(Δω² − K²) (Adler 1946)
    m = KuramotoRouter(coupling=2.0, dt=0.001, wrap=False)
    traj = m.simulate(
        torch.zeros(1, 2, dtype=torch.float64), torch.tensor([[0.0, 2.5]], dtype=torch.float64), 20000
    )[0]
    phi = traj[:, 1] - traj[:, 0]
    beat = 1.5
    period_steps = round(2 * math.pi / beat / 0.001)
    start = 2000
    slope = (phi[start + 4 * period_steps] - phi[start]) / (4 * period_steps * 0.001)  # whole periods
    assert slope.item() == pytest.approx(beat, rel=2e-3)


@pytest.mark.parametrize("k,expected", [(2.0, math.sqrt(0.5)), (4.0, math.sqrt(0.75))])
def test_kuramoto_order_parameter_matches_mean_field_theory(one_thread, k, expected):
    n, gamma = 1000, 0.5
    i = torch.arange(1, n + 1, dtype=torch.float64)
    omega = gamma * torch.tan(math.pi * (i / (n + 1) - 0.5))  # Lorentzian quantiles, half-width γ
    theta0 = torch.rand(1, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 * math.pi
    r, _ = order_parameter(KuramotoRouter(coupling=k, dt=0.02).simulate(theta0, omega[None], 3000))
    assert r[0, -1000:].mean().item() == pytest.approx(expected, abs=0.02)


def test_incoherent_below_critical_coupling(one_thread):
    n, gamma = 1000, 0.5
    i = torch.arange(1, n + 1, dtype=torch.float64)
    omega = gamma * torch.tan(math.pi * (i / (n + 1) - 0.5))
    theta0 = torch.rand(1, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 * math.pi
    r, _ = order_parameter(KuramotoRouter(coupling=0.5, dt=0.02).simulate(theta0, omega[None], 3000))
    assert r[0, -1000:].mean().item() < 0.12  # K < K_c = 2γ = 1: only O(1/√N) residual coherence


def test_identical_oscillators_synchronise_and_forward_routes(one_thread):
    g = torch.Generator().manual_seed(3)
    theta = torch.rand(2, 20, generator=g, dtype=torch.float64) * 2 * math.pi
    omega = torch.full((2, 20), 2 * math.pi * 4.0, dtype=torch.float64)
    m = KuramotoRouter(coupling=3.0, dt=0.01)
    msgs = torch.randn(2, 20, 3, generator=g, dtype=torch.float64)
    for _ in range(1500):
        out, theta = m(msgs, theta, omega)
    r, _ = order_parameter(theta)
    assert (r > 0.999).all()
    torch.testing.assert_close(out, msgs.mean(1, keepdim=True).expand_as(out), atol=1e-3, rtol=0)
