"""E-prop: LIF leak toward rest (closed form), exact BPTT equality without recurrence, 12 bytes per synapse,
and online learning of a temporal pattern-generation task (Bellec et al. 2020, Fig. 2) — loss falls."""

import math

import pytest
import torch

from wasm_torch.nn.eprop import EPropLIF


@pytest.fixture(autouse=True)
def one_thread():
    # thousands of tiny sequential steps: intra-op threads only add overhead
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Spike(torch.autograd.Function):
    """Heaviside with the e-prop pseudo-derivative as its surrogate gradient (the BPTT oracle)."""

    @staticmethod
    def forward(ctx, v, v_th, v_rest, gamma):
        ctx.save_for_backward(v)
        ctx.consts = (v_th, v_rest, gamma)
        return (v >= v_th).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        v_th, v_rest, gamma = ctx.consts
        d = v_th - v_rest
        return grad * gamma / d * torch.clamp(1 - (v - v_th).abs() / d, min=0), None, None, None


def bptt_gradients(m: EPropLIF, x, target):
    c = m.config
    w = m.weight.clone().requires_grad_()
    w_out = m.w_out.clone().requires_grad_()
    b = m.b_out.clone().requires_grad_()
    v = x.new_full((x.shape[0], c.n_rec), c.v_rest)
    z = x.new_zeros(x.shape[0], c.n_rec)
    y = x.new_zeros(x.shape[0], c.n_out)
    loss = 0
    for t in range(x.shape[1]):
        pre = torch.cat([x[:, t], z], -1)
        v = c.v_rest + m.alpha * (v - c.v_rest) + pre @ w.T - z.detach() * (c.v_th - c.v_rest)
        z = Spike.apply(v, c.v_th, c.v_rest, c.gamma)
        y = m.kappa * y + z @ w_out.T + b
        loss = loss + 0.5 * ((y - target[:, t]) ** 2).sum()
    loss.backward()
    return w.grad, w_out.grad, b.grad


def pattern_task(steps=200, n_in=20, seed=0, dtype=torch.float32):
    """Frozen 50 Hz Poisson input → a sum of four sinusoids (periods 200, 100, 66, 40 ms), dt = 1 ms."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(1, steps, n_in, generator=g) < 0.05).to(dtype)
    t = torch.arange(steps, dtype=dtype)
    y = torch.zeros(steps, dtype=dtype)
    for period in (200, 100, 66, 40):
        amp, phase = torch.rand(2, generator=g, dtype=dtype)
        y += amp * torch.sin(2 * math.pi * t / period + 2 * math.pi * phase)
    return x, (y / y.abs().max())[None, :, None]


def test_membrane_leaks_toward_rest_closed_form():
    # one input line always on, weight I to each neuron, no recurrence: v_n = v_rest + I (1 − αⁿ)/(1 − α)
    m = EPropLIF(n_in=1, n_rec=3, n_out=1, v_rest=-70.0, v_th=-55.0, w_rec_scale=0.0).double()
    currents = torch.tensor([0.5, 0.75, 2.0], dtype=torch.float64)  # threshold 15 mV above rest
    m.w_in.copy_(currents[:, None])
    _, z, v = m.run(torch.ones(1, 300, 1, dtype=torch.float64))
    a = m.alpha
    steady = -70.0 + currents / (1 - a)  # 0.5/(1−α) ≈ 10.25 mV, 0.75/(1−α) ≈ 15.4 mV, 2/(1−α) ≈ 41 mV
    assert z[0, :, 0].sum() == 0  # v∞ = −59.7 mV < −55 mV: never fires …
    torch.testing.assert_close(v[0, -1, 0], steady[0])  # … and settles at rest + I/(1 − α), not at I
    for j in (1, 2):
        first = math.ceil(
            math.log(1 - 15.0 * (1 - a) / currents[j].item()) / math.log(a)
        )  # steps to threshold
        assert int(z[0, :, j].nonzero()[0]) == first - 1
    m0 = EPropLIF(n_in=1, n_rec=3, n_out=1, v_rest=-70.0, v_th=-55.0).double()
    _, z0, v0 = m0.run(torch.zeros(1, 50, 1, dtype=torch.float64))
    assert z0.sum() == 0 and (v0 == -70.0).all()  # no input: stays exactly at rest


@pytest.mark.parametrize("v_rest,v_th", [(0.0, 1.0), (-70.0, -55.0)])
def test_eprop_equals_bptt_without_recurrence(v_rest, v_th):
    x, y = pattern_task(steps=120, dtype=torch.float64)
    m = EPropLIF(
        n_in=20, n_rec=30, n_out=1, w_rec_scale=0.0, v_rest=v_rest, v_th=v_th, w_in_scale=2.0
    ).double()
    g_w, g_out, g_b = bptt_gradients(m, x, y)
    m.learn(x, y, apply=False)
    assert g_w[:, :20].abs().max() > 0.1  # non-trivial: neurons spike and the input weights get gradient
    torch.testing.assert_close(m.acc, g_w)
    torch.testing.assert_close(m.acc_out, g_out)
    torch.testing.assert_close(m.acc_b, g_b)


def test_eprop_approximates_bptt_with_recurrence():
    x, y = pattern_task(steps=120, dtype=torch.float64)
    m = EPropLIF(n_in=20, n_rec=30, n_out=1, w_rec_scale=0.5).double()
    g_w, g_out, _ = bptt_gradients(m, x, y)
    m.learn(x, y, apply=False)
    torch.testing.assert_close(m.acc_out, g_out)  # the readout gradient stays exact
    cos = (m.acc * g_w).sum() / (m.acc.norm() * g_w.norm())
    assert 0.6 < cos < 0.999  # an approximation (it ignores paths through other neurons), but aligned


def test_twelve_bytes_of_state_per_synapse():
    m = EPropLIF(n_in=20, n_rec=50, n_out=2)
    synapses = 50 * (20 + 50)
    state = m.synapse_state()
    assert set(state) == {"weight", "eligibility", "learning_signal"}
    assert all(t.dtype == torch.float32 and t.numel() == synapses for t in state.values())
    assert sum(t.numel() * t.element_size() for t in state.values()) / synapses == 12
    big = [name for name, b in m.named_buffers() if b.numel() >= synapses]
    assert sorted(big) == ["acc", "elig", "weight"]  # nothing else grows with the synapse count


def test_online_learning_of_a_temporal_pattern():
    x, y = pattern_task()
    m = EPropLIF(n_in=20, n_rec=50, n_out=1, lr=3e-4, lr_out=5e-6)
    w0 = m.weight.clone()
    losses = [m.learn(x, y) for _ in range(25)]
    assert losses[-1] < 0.1 * losses[0]  # measured 0.574 → 0.038
    assert (m.w_in - w0[:, :20]).abs().max() > 1e-3 and (m.w_rec - w0[:, 20:]).abs().max() > 1e-3
    assert (torch.diagonal(m.w_rec) == 0).all()


def test_input_and_recurrent_synapses_learn_with_the_readout_frozen():
    x, y = pattern_task()
    m = EPropLIF(n_in=20, n_rec=50, n_out=1, lr=3e-4, lr_out=0.0)
    w_out = m.w_out.clone()
    losses = [m.learn(x, y) for _ in range(25)]
    assert (m.w_out == w_out).all() and (m.b_out == 0).all()
    assert losses[-1] < 0.15 * losses[0]  # measured 0.574 → 0.039: only W_in and W_rec changed


def test_per_step_online_updates_also_learn():
    x, y = pattern_task()
    m = EPropLIF(n_in=20, n_rec=50, n_out=1, lr=3e-4, lr_out=5e-6, update_every=1)
    losses = [m.learn(x, y) for _ in range(15)]
    assert losses[-1] < 0.25 * losses[0]
