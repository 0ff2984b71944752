"""The autotuner on planted search spaces (fake measurements with a known best), and once on a real
compile of a tiny model (validated against PyTorch, `tuning` recorded in the manifest)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wasm_torch.errors import LearningError
from wasm_torch.learn.memory import PatternMemory
from wasm_torch.learn.reasoning import BANK, ReasoningBank
from wasm_torch.learn.space import SearchSpace
from wasm_torch.learn.tuner import cost_model_path, tune

from .fakes import PlantedMeasurer, planted
from .patterns import synthetic_pattern


def space() -> SearchSpace:
    return SearchSpace.from_choices(
        {"tile": [8, 16, 32, 64], "loop": ["simd", "pragma", "scalar"], "fuse": [True, False], "opt": ["-Os", "-O2", "-O3"]}
    )


BEST = {"tile": 32, "loop": "pragma", "fuse": False, "opt": "-O3"}


def run(sp, meas, pattern, memory=False, budget=30, **kw):
    return tune(None, (), budget=budget, memory=memory, measurer=meas, space=sp, pattern=pattern, **kw)


def test_search_finds_the_planted_best(rng):
    sp = space()
    meas = PlantedMeasurer(sp, planted(sp, BEST))
    assert meas.best() == BEST
    r = run(sp, meas, synthetic_pattern("m", rng), budget=40)
    assert r.config == BEST and r.significant
    assert r.gain == pytest.approx(1.0 / meas.true_ratio(BEST), rel=0.05)  # the confirmed gain is the truth
    assert r.measured <= 40 and len(meas.calls) == r.measured + 3  # + 3 confirmation runs
    keys = [sp.key(c) for c in meas.calls[: r.measured]]
    assert len(set(keys)) == len(keys)  # nothing measured twice during the search


def test_tpe_beats_its_own_random_start_on_average(rng):
    """Same budget: the configuration TPE picks is better than the best of its random start trials."""
    sp = space()
    wins = 0
    for seed in range(3):
        meas = PlantedMeasurer(sp, planted(sp, BEST), seed=seed)
        r = run(sp, meas, synthetic_pattern("m", rng), budget=24, seed=seed, confirm=0)
        start = [t.ratio for t in r.trials[1:7] if t.ratio]
        wins += min(t.ratio for t in r.trials if t.ratio) < min(start)
    assert wins >= 2


def test_pure_noise_keeps_the_default(rng):
    sp = space()
    meas = PlantedMeasurer(sp, {}, noise=0.05)  # every configuration is as fast as the default
    r = run(sp, meas, synthetic_pattern("m", rng), budget=15)
    assert r.config == sp.default() and r.gain == 1.0 and not r.significant
    assert r.search_best_gain > 1.0  # the search did see a lucky one; confirmation caught it


def test_hopeless_trials_are_pruned_and_failures_recorded(rng):
    sp = space()
    factors = planted(sp, BEST)
    factors["loop"]["scalar"] = 5.0  # scalar loops: 5x slower, obviously hopeless after 10 rounds
    broken = {sp.key({**sp.default(), "opt": "-O2"})}
    meas = PlantedMeasurer(sp, factors, broken=broken)
    mem_free = run(sp, meas, synthetic_pattern("m", rng), budget=30, warm_start=False)
    states = [t.state for t in mem_free.trials]
    assert "pruned" in states
    pruned = [t for t in mem_free.trials if t.state == "pruned"]
    scalar = [t for t in mem_free.trials[4:] if t.config["loop"] == "scalar"]  # after the pruner's start-up
    assert scalar and all(t.state == "pruned" for t in scalar)
    assert all(len(t.measurement.ratios) < meas.rounds for t in pruned)
    assert mem_free.config == BEST  # the pruner did not throw the best away
    meas2 = PlantedMeasurer(sp, {}, broken={sp.key(c) for c in sp.all() if c != sp.default()})
    r = run(sp, meas2, synthetic_pattern("n", rng), budget=4)
    assert [t.state for t in r.trials[1:]] == ["failed"] * 4 and "planted build failure" in r.trials[1].error
    assert r.config == sp.default() and r.gain == 1.0


def test_memory_warm_start_finds_the_best_first_for_a_similar_model(tmp_path, rng):
    sp = space()
    mem = PatternMemory(tmp_path)
    centre = rng.random(64)
    first = run(sp, PlantedMeasurer(sp, planted(sp, BEST)), synthetic_pattern("a", rng, centre), memory=mem, budget=40)
    assert first.config == BEST
    assert len(mem) == first.measured + 3  # every trial recorded, and the 3 confirmation runs
    meas = PlantedMeasurer(sp, planted(sp, BEST), seed=5)
    second = run(sp, meas, synthetic_pattern("b", rng, centre), memory=PatternMemory(tmp_path), budget=3)
    assert second.trials[1].source == "memory" and second.trials[1].config == BEST
    assert second.config == BEST  # found with its first trial
    record = second.manifest_record()
    assert record["warm_start"][0] == "memory" and record["trials"] == 3
    json.dumps(record)  # the manifest field is JSON


def test_learning_side_effects_bank_and_cost_model(tmp_path, rng):
    sp = space()
    mem = PatternMemory(tmp_path)
    pat = synthetic_pattern("a", rng)
    run(sp, PlantedMeasurer(sp, planted(sp, BEST)), pat, memory=mem, budget=30)
    bank = ReasoningBank(tmp_path / BANK)
    assert len(bank) > 0  # some measured pairs differed in one knob
    assert cost_model_path(tmp_path, sp).exists()
    from wasm_torch.learn.tuner import load_cost_model

    cm = load_cost_model(tmp_path, sp)
    assert cm.steps >= 25  # one MicroLoRA step per measured trial
    nothing = tune(None, (), budget=5, memory=PatternMemory(tmp_path / "other"), measurer=PlantedMeasurer(sp, {}),
                   space=sp, pattern=pat, learn=False)
    assert len(PatternMemory(tmp_path / "other")) == 0 and nothing.measured == 5


def test_bad_budgets_are_refused(rng):
    sp = space()
    with pytest.raises(LearningError, match="budget"):
        run(sp, PlantedMeasurer(sp, {}), synthetic_pattern("m", rng), budget=0)


@pytest.mark.toolchain
@pytest.mark.wasm
def test_real_compile_search_on_a_tiny_model(tmp_path):
    """Two real trials through the pipeline (each validated against PyTorch) and a tuned artifact
    whose manifest records the options and the tuning."""
    from wasm_torch.learn.compile_space import CompileSpace
    from wasm_torch.learn.tuner import compile_tuned
    from wasm_torch.runtime import load

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4)).eval()
    x = torch.randn(3, 16)
    sp = CompileSpace()
    assert "elementwise" in {k.name for k in sp} and sp.size > 100
    r = tune(model, (x,), budget=2, memory=PatternMemory(tmp_path / "mem"), rounds=5, confirm=1, space=sp,
             work_dir=tmp_path / "work")
    assert r.measured == 2 and all(t.state in ("complete", "pruned", "failed") for t in r.trials)
    # every measured trial is an outcome, and so is each confirmation run of a winner (when one was faster)
    recorded = sum(1 for t in r.trials[1:] if t.state != "failed") + len(r.confirm_runs)
    assert len(PatternMemory(tmp_path / "mem")) == recorded
    art = compile_tuned(model, (x,), tmp_path / "out", r)
    raw = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert raw["tuning"]["config"] == r.config and raw["tuning"]["trials"] == 2
    assert raw["compiler"]["options"] == r.options().to_json()
    y = load(art.path)(x.numpy())
    np.testing.assert_allclose(y, model(x).detach().numpy(), atol=1e-4, rtol=1e-3)
