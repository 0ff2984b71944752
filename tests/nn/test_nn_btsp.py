"""BTSP: closed-form weight dynamics, the seconds-long asymmetric window, and one-shot association recall."""

import math

import pytest
import torch

from wasm_torch.nn.btsp import BTSPConfig, BTSPLayer, overlap_gain


@pytest.fixture(autouse=True)
def one_thread():
    # hundreds of small sequential steps: intra-op threads only add overhead
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pairing(delay_s, w0=0.0, steps=1500):
    """One 100 ms input burst at 7 s and one 300 ms plateau at 7 s + delay; returns the final weight."""
    m = BTSPLayer(in_features=1, out_features=1, w_init=w0)
    x, p = torch.zeros(1, steps, 1), torch.zeros(1, steps, 1)
    t0 = 700
    x[0, t0 : t0 + 10] = 1
    t1 = t0 + round(delay_s * 100)
    p[0, t1 : t1 + 30] = 1
    m(x, p)
    return m.weight.item()


def test_overlap_gain_is_normalised():
    s = torch.tensor([0.0, 1.0])
    torch.testing.assert_close(overlap_gain(s, 0.3, 10.0), torch.tensor([0.0, 1.0]))
    assert (overlap_gain(torch.linspace(0, 1, 50), 0.3, 10.0).diff() > 0).all()


@pytest.mark.parametrize("s,w0", [(1.0, 0.2), (0.2, 0.9), (0.6, 0.5)])
def test_constant_overlap_relaxes_to_closed_form_equilibrium(s, w0):
    # with ET = a and IS = b held constant, s = ab and the Euler iterates are exactly
    # W_n = W* + (W_0 − W*)(1 − dt·r)^n, r = k₊q₊(s) + k₋q₋(s), W* = k₊q₊ / r
    cfg = BTSPConfig(in_features=1, out_features=1)
    m = BTSPLayer(cfg).double()
    m.weight.fill_(w0)
    n = 200
    x = torch.full((1, n, 1), math.sqrt(s), dtype=torch.float64)
    p = torch.full((1, n, 1), math.sqrt(s), dtype=torch.float64)
    m(x, p)
    st = torch.tensor(s, dtype=torch.float64)
    qp = cfg.k_plus * overlap_gain(st, cfg.theta_plus, cfg.beta_plus)
    qm = cfg.k_minus * overlap_gain(st, cfg.theta_minus, cfg.beta_minus)
    w_star = qp / (qp + qm)
    expected = w_star + (w0 - w_star) * (1 - cfg.dt * (qp + qm)) ** n
    assert m.weight.item() == pytest.approx(expected.item(), rel=1e-10)


def test_bidirectional_low_overlap_depresses_strong_synapses():
    m = BTSPLayer(in_features=2, out_features=1).double()
    m.weight.fill_(0.9)
    x = torch.zeros(1, 300, 2, dtype=torch.float64)
    x[..., 0], x[..., 1] = 1.0, 0.2  # input 1 overlaps the plateau only weakly (s = 0.2)
    m(x, torch.ones(1, 300, 1, dtype=torch.float64))
    assert m.weight[0, 0] > 0.92  # W*(1.0) = 0.93: potentiated
    assert m.weight[0, 1] < 0.8  # W*(0.2) = 0.78: depressed


def test_window_spans_seconds_and_favours_input_before_plateau():
    w = {d: pairing(d) for d in (-3, -1, 0, 1, 2, 5)}
    assert w[0] > 0.7  # one pairing suffices (one-shot)
    assert w[2] > 0.4  # input 2 s before the plateau is still potentiated: behavioural, not STDP, timescale
    assert w[1] > w[-1] > w[-3]  # asymmetric: τ_ET (1.66 s) > τ_IS (0.44 s)
    assert w[5] < 0.1 and w[-3] < 0.05  # far outside the window: (almost) nothing


def association_task(pairs, delay_steps=10, seed=0, n_in=200, n_out=40, a_in=10, a_out=4, sequential=True):
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.zeros(pairs, n_in), torch.zeros(pairs, n_out)
    for k in range(pairs):
        xs[k, torch.randperm(n_in, generator=g)[:a_in]] = 1
        ys[k, torch.randperm(n_out, generator=g)[:a_out]] = 1
    layer = BTSPLayer(in_features=n_in, out_features=n_out)
    t = max(80, delay_steps + 40)
    x, p = torch.zeros(pairs, t, n_in), torch.zeros(pairs, t, n_out)
    x[:, :30] = xs[:, None]  # 300 ms of input …
    p[:, delay_steps : delay_steps + 30] = ys[:, None]  # … and a 300 ms plateau in the target cells
    if sequential:
        for k in range(pairs):  # exactly one exposure per pair
            layer(x[k : k + 1], p[k : k + 1])
    else:
        layer(x, p)
    out = layer(xs[:, None])[:, 0]
    recalled = (out > 0.7 * a_in).double()  # a cell fires if its cue synapses average a weight > 0.7
    return (recalled == ys).all(-1).double().mean().item()


def test_one_shot_association_recall():
    assert association_task(20) == 1.0  # 20 / 20 target patterns recalled exactly after one exposure
    assert association_task(40, sequential=False) == 1.0


def test_recall_needs_the_plateau_inside_the_window():
    assert (
        association_task(20, delay_steps=600, sequential=False) == 0.0
    )  # plateau 6 s late: nothing recalled
    layer = BTSPLayer(in_features=5, out_features=2)
    layer(torch.ones(1, 50, 5))  # no plateau → no plasticity
    assert (layer.weight == 0).all()
