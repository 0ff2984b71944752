"""Predictive-coding gate: error bound, exact transmission counts on closed-form signals, decoder agreement,
and the bandwidth saved on a smooth signal."""

import itertools
import math

import pytest
import torch

from wasm_torch.nn.predictive import PredictiveCodingGate


def smooth_signal(b=4, t=1000, d=8, noise=0.01, seed=0):
    """Sinusoids of 0.001–0.006 cycles/step (periods 170–1000 steps) plus white noise of std `noise`."""
    g = torch.Generator().manual_seed(seed)
    time = torch.arange(t, dtype=torch.float64)[None, :, None]
    freq = 0.001 + 0.005 * torch.rand(b, 1, d, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(b, 1, d, generator=g, dtype=torch.float64)
    return torch.sin(2 * math.pi * freq * time + phase) + noise * torch.randn(
        b, t, d, generator=g, dtype=torch.float64
    )


@pytest.mark.parametrize("granularity", ["vector", "element"])
@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_reconstruction_error_never_exceeds_threshold(granularity, alpha):
    x = torch.cumsum(
        0.05 * torch.randn(3, 300, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64), dim=1
    )  # random walks
    gate = PredictiveCodingGate(threshold=0.1, alpha=alpha, granularity=granularity)
    out = gate(x)
    err = out.reconstruction - x
    if granularity == "vector":
        assert (err.pow(2).mean(-1).sqrt() <= 0.1 + 1e-12).all()
        assert (err.abs().amax(-1)[out.sent] < 1e-12).all()  # a sent vector arrives exactly
        assert out.sent.any() and not out.sent.all()
    else:
        assert (err.abs() <= 0.1 + 1e-12).all()
    torch.testing.assert_close(gate.decode(out.residuals), out.reconstruction)  # the receiver agrees


def test_piecewise_constant_signal_sends_exactly_at_jumps():
    levels = torch.tensor([0.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0, -2.0, -2.0], dtype=torch.float64)
    x = levels.repeat_interleave(5)[None, :, None].repeat(2, 1, 4)  # 50 steps, jumps at 5, 20, 40
    out = PredictiveCodingGate(threshold=0.5)(x)
    assert out.sent[0].nonzero().flatten().tolist() == [5, 20, 40]
    assert out.bandwidth_saved.item() == pytest.approx(1 - 3 / 50)
    torch.testing.assert_close(out.reconstruction, x)


def test_slow_predictor_still_respects_the_bound_but_sends_more():
    x = smooth_signal(t=300)
    fast = PredictiveCodingGate(threshold=0.1, alpha=1.0)(x)
    slow = PredictiveCodingGate(threshold=0.1, alpha=0.2)(x)
    assert slow.sent.sum() > fast.sent.sum()


def test_zero_threshold_sends_everything_that_changes():
    x = smooth_signal(t=50)
    out = PredictiveCodingGate(threshold=0.0)(x)
    assert out.sent.all() and out.bandwidth_saved.item() == 0.0
    torch.testing.assert_close(out.reconstruction, x)


def test_bandwidth_saved_on_smooth_signal():
    x = smooth_signal()
    saved = {}
    for thr in (0.02, 0.05, 0.1, 0.2):
        out = PredictiveCodingGate(threshold=thr)(x)
        saved[thr] = out.bandwidth_saved.item()
        assert (out.reconstruction - x).pow(2).mean(-1).sqrt().max() <= thr + 1e-12
    values = list(saved.values())
    assert all(a < b for a, b in itertools.pairwise(values)), saved
    assert saved[0.1] > 0.8, saved  # measured 0.847: > 80 % of the vectors are never sent
