"""Interleaved measurement on a fake timer: known latencies, preemption-like noise, early stops,
and the bootstrap bound the tuner trusts."""

from __future__ import annotations

import numpy as np
import pytest

from wasm_torch.errors import LearningError
from wasm_torch.learn.measure import Measurement, interleaved, race


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



def test_race_times_every_candidate_against_the_reference_in_the_same_rounds():
    t = FakeTime()
    ms = race([t.work(1e-3), t.work(0.5e-3), t.work(2e-3)], rounds=7, min_sample_s=2e-3, timer=t)
    assert [m.ratio for m in ms] == [pytest.approx(0.5), pytest.approx(2.0)]
    assert all(len(m.ratios) == 7 for m in ms) and ms[0].baseline == ms[1].baseline
    assert ms[0].info["calls_per_sample"] in (3, 4) and ms[1].info["calls_per_sample"] == 1  # ~2 ms samples


def test_race_sees_through_preemption_and_rotates_the_order():
    t = FakeTime(preempt=0.3, seed=3)
    order: list[int] = []

    def work(i: int, cost: float):
        inner = t.work(cost)

        def run() -> None:
            order.append(i)
            inner()

        return run

    ms = race([work(0, 1e-3), work(1, 0.8e-3), work(2, 1e-3)], rounds=30, min_sample_s=0.0, timer=t)
    assert ms[0].ratio == pytest.approx(0.8, rel=0.05) and ms[0].upper() < 1.0
    assert ms[1].upper() >= 1.0  # as fast as the reference: never called faster
    timed = order[3 * 2 + 3 :]  # after the warm-up calls and the one call each that sizes the samples
    firsts = {timed[3 * r] for r in range(30)}
    assert firsts == {0, 1, 2}  # every callable leads some rounds


def test_race_refuses_bad_arguments():
    with pytest.raises(LearningError, match="rounds"):
        race([lambda: None, lambda: None], rounds=0)
    with pytest.raises(LearningError, match="at least one candidate"):
        race([lambda: None])


@pytest.mark.toolchain
@pytest.mark.wasm
def test_compile_measurer_races_kept_artifacts_with_a_control(tmp_path):
    """Real compiles of a tiny model: a race of the default (a control: second instance) and one
    other configuration, repeated with fresh instances; kept artifacts are not compiled again."""
    import torch

    from wasm_torch.learn.compile_space import CompileSpace
    from wasm_torch.learn.measure import CompileMeasurer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
    sp = CompileSpace()
    other = {**sp.default(), "elementwise": "scalar"}
    meas = CompileMeasurer(model, (torch.randn(2, 8),), sp, work_dir=tmp_path, rounds=5, keep_artifacts=True)
    try:
        first = meas.measure(other)
        assert first.ratio > 0 and len(first.ratios) == 5
        compiled = meas.compiled
        control, cand = meas.race([sp.default(), other], rounds=5, runs=2)
        assert meas.compiled == compiled  # both were kept: nothing compiled again
        assert len(control.info["run_ratios"]) == 2 and len(control.ratios) == 10
        assert 0.5 < float(np.median(control.info["run_ratios"])) < 2.0  # the same artifact: near 1
        assert cand.baseline == control.baseline  # timed in the same rounds
    finally:
        meas.close()
    assert (tmp_path / "default").is_dir()  # a work_dir we were given is left in place
    with pytest.raises(LearningError, match="runs"):
        CompileMeasurer.race(meas, [other], runs=0)
