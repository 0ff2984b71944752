"""BackgroundLearner (bounded consolidation chunks, its thread) and the circadian gating of it in
`wasm-torch serve` (serve/learning.py), with a real learner and a fake clock."""

from __future__ import annotations

import time

import numpy as np
import pytest

from wasm_torch.errors import LearningError
from wasm_torch.learn.background import BackgroundLearner
from wasm_torch.learn.memory import SNAPSHOT, PatternMemory
from wasm_torch.learn.synthetic import demo_space
from wasm_torch.learn.tuner import cost_model_path, load_cost_model
from wasm_torch.serve.circadian import CircadianSettings
from wasm_torch.serve.clock import FakeClock
from wasm_torch.serve.learning import LearningLoop

from .patterns import synthetic_pattern


def seeded(folder, space, rng, n: int = 30) -> PatternMemory:
    mem = PatternMemory(folder)
    for i in range(n):
        p = synthetic_pattern(f"p{i % 5}", rng)
        cfg = space.sample(rng)
        mem.post_query(p, cfg, 1e-3 * (1.0 + 0.1 * cfg["k0"]), 1e-3, space.id)
    return mem


def test_a_round_is_fold_then_fit_chunks_then_ewc_then_idle(tmp_path, rng):
    sp = demo_space()
    mem = seeded(tmp_path, sp, rng)
    bl = BackgroundLearner(mem, [sp], fit_epochs=20, fit_chunks=2)
    did = [bl.step().did for _ in range(6)]
    assert did == ["fold", "fit", "fit", "ewc", "idle", "idle"]
    assert (tmp_path / SNAPSHOT).exists() and cost_model_path(tmp_path, sp).exists()
    cm = load_cost_model(tmp_path, sp)
    assert cm.consolidations == 1 and cm.fisher["B"].any()
    assert all(r.cpu_s >= 0 and r.wall_s >= 0 for r in bl.history)
    mem.post_query(synthetic_pattern("new", rng), sp.default(), 1e-3, 1e-3, sp.id)
    assert bl.step().did == "fold"  # something new: another round


def test_the_cost_model_learns_the_recorded_effect(tmp_path, rng):
    sp = demo_space()
    mem = seeded(tmp_path, sp, rng, n=60)  # latency grows 10 % per step of knob k0
    bl = BackgroundLearner(mem, [sp], fit_epochs=100, fit_chunks=4)
    while bl.step().did != "ewc":
        pass
    cm = load_cost_model(tmp_path, sp)
    p = synthetic_pattern("p0", rng)
    xs = [np.concatenate([p.vector, sp.encode({"k0": v})]) for v in (0, 1, 2)]
    pred = cm.predict(np.stack(xs), np.repeat(p.gates[None, :], 3, 0))
    assert pred[0] < pred[1] < pred[2]
    assert pred[2] - pred[0] == pytest.approx(np.log(1.2), abs=0.08)


def test_spaces_with_too_little_data_are_skipped(tmp_path, rng):
    sp = demo_space()
    mem = seeded(tmp_path, sp, rng, n=3)
    bl = BackgroundLearner(mem, [sp], min_rows=8)
    assert [bl.step().did for _ in range(3)] == ["fold", "skip", "idle"]
    assert not cost_model_path(tmp_path, sp).exists()


def test_thread_runs_only_when_allowed_and_stops(tmp_path, rng):
    sp = demo_space()
    bl = BackgroundLearner(seeded(tmp_path, sp, rng), [sp], fit_epochs=5, fit_chunks=1)
    allowed = {"now": False}
    bl.start(0.01, lambda: allowed["now"])
    time.sleep(0.2)
    assert bl.history == []
    allowed["now"] = True
    deadline = time.monotonic() + 30
    while not any(r.did == "ewc" for r in bl.history) and time.monotonic() < deadline:
        time.sleep(0.02)
    bl.stop()
    assert not bl.running and any(r.did == "ewc" for r in bl.history)
    with pytest.raises(LearningError):
        bl.start(0)


def test_consolidation_runs_in_rest_not_while_busy(tmp_path, rng):
    """Busy hour (load above `active_above`): no chunk. Night: chunks run, one per period."""
    sp = demo_space()
    learner = BackgroundLearner(seeded(tmp_path, sp, rng), [sp], fit_epochs=10, fit_chunks=2)
    clock, served = FakeClock(), {"n": 0.0}
    loop = LearningLoop(
        learner,
        lambda: served["n"],
        CircadianSettings(capacity_rps=100.0, window_s=60.0, min_dwell_s=300.0),
        clock,
        period_s=60.0,
    )
    for _ in range(60):  # one busy hour: 50 requests/s
        clock.advance(60.0)
        served["n"] += 50 * 60
        loop.tick()
    assert loop.stats.by_phase["active"].steps == 0 and learner.history == []
    for _ in range(60):  # one quiet hour
        clock.advance(60.0)
        loop.tick()
    by = loop.stats.by_phase
    assert by["active"].steps == 0
    assert by["rest"].steps + by["dusk"].steps >= 40  # about one per minute once asleep
    assert [r.did for r in learner.history[:5]] == ["fold", "fit", "fit", "ewc", "idle"]
    assert by["rest"].cpu_s > 0


def test_a_failing_learner_does_not_stop_the_loop(tmp_path):
    class Broken:
        def step(self):
            raise LearningError("damaged memory file")

    clock = FakeClock()
    loop = LearningLoop(Broken(), lambda: 0.0, CircadianSettings(min_dwell_s=0.0), clock, period_s=1.0)
    for _ in range(5):
        clock.advance(10.0)
        loop.tick()
    assert len(loop.stats.errors) >= 3 and "damaged" in loop.stats.errors[0]
