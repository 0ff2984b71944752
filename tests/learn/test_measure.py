"""Interleaved measurement on a fake timer: known latencies, preemption-like noise, early stops,
and the bootstrap bound the tuner trusts."""

from __future__ import annotations

import numpy as np
import pytest

from wasm_torch.errors import LearningError
from wasm_torch.learn.measure import Measurement, interleaved


class FakeTime:
    """A timer that the timed functions advance: `cost` per call, sometimes 'preempted' (+ a lot)."""

    def __init__(self, preempt: float = 0.0, seed: int = 0) -> None:
        self.now, self.preempt, self.rng = 0.0, preempt, np.random.default_rng(seed)

    def __call__(self) -> float:
        return self.now

    def work(self, cost: float):
        def run() -> None:
            self.now += cost
            if self.rng.random() < self.preempt:
                self.now += cost * 5  # another process ran meanwhile: time only ever gets added

        return run


def test_known_ratio_without_noise():
    t = FakeTime()
    m = interleaved(t.work(1e-3), t.work(0.5e-3), rounds=9, min_sample_s=2e-3, timer=t)
    assert m.ratio == pytest.approx(0.5) and m.gain == pytest.approx(2.0)
    assert len(m.ratios) == 9 and m.info["calls_per_sample"] == 2
    assert m.upper() == pytest.approx(0.5)


def test_low_quantile_sees_through_preemption_noise():
    t = FakeTime(preempt=0.3, seed=1)  # 30 % of calls hit by a 6x slowdown, at random
    m = interleaved(t.work(1e-3), t.work(0.8e-3), rounds=21, min_sample_s=0.0, timer=t)
    assert m.ratio == pytest.approx(0.8, rel=0.05)
    assert m.upper() < 1.0


def test_equal_speeds_under_noise_are_not_called_faster():
    t = FakeTime(preempt=0.3, seed=2)
    m = interleaved(t.work(1e-3), t.work(1e-3), rounds=21, min_sample_s=0.0, timer=t)
    assert m.upper() >= 1.0


def test_report_can_stop_early():
    t = FakeTime()
    seen = []

    def report(step: int, ratio: float) -> bool:
        seen.append((step, ratio))
        return step == 2

    m = interleaved(t.work(1e-3), t.work(3e-3), rounds=9, min_sample_s=0.0, report=report, timer=t)
    assert m.stopped_early and len(m.ratios) == 3 and seen[-1] == (2, pytest.approx(3.0))


def test_bad_measurements_are_refused():
    with pytest.raises(LearningError):
        interleaved(lambda: None, lambda: None, rounds=0)
    with pytest.raises(LearningError):
        Measurement((1.0, 2.0), (1.0,))
    with pytest.raises(LearningError):
        Measurement((), ())
    merged = Measurement((1.0,), (2.0,)).merged(Measurement((1.0,), (2.0,)))
    assert merged.ratios == (0.5, 0.5)

