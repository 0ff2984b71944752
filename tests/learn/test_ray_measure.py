"""Trials measured on their target machine through Ray: a real local Ray whose only worker slot
for the target carries a custom resource; the tune runs in this process, each trial's compile,
validation and timing in the actor there."""

from __future__ import annotations

import os

import pytest
import torch

from wasm_torch.errors import LearningError
from wasm_torch.learn.compile_space import CompileSpace
from wasm_torch.learn.tuner import tune
from wasm_torch.serve.ray.env import init_ray  # before `import ray`: keeps wasmtime's trap handling

pytestmark = [pytest.mark.slow, pytest.mark.toolchain, pytest.mark.wasm]


@pytest.fixture(scope="module")
def ray_target():
    import ray

    init_ray(num_cpus=2, resources={"machine:target-a": 1}, include_dashboard=False,
             object_store_memory=80 * 1024 * 1024, log_to_driver=False)  # fmt: skip
    yield ray
    ray.shutdown()


def test_a_tune_measures_every_trial_in_the_target_machines_actor(ray_target):
    from wasm_torch.learn.ray_measure import RayMeasurer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4)).eval()
    x = torch.randn(3, 16)
    sp = CompileSpace()
    meas = RayMeasurer(model, (x,), sp, resources={"machine:target-a": 1}, rounds=5)
    try:
        r = tune(model, (x,), budget=2, memory=False, confirm=1, space=sp, measurer=meas)
        done = [t for t in r.trials if t.measurement is not None]
        assert r.measured == 2 and done
        pids = {t.measurement.info["pid"] for t in done}
        assert len(pids) == 1 and os.getpid() not in pids  # one actor, not this process
        assert all(t.measurement.ratio > 0 and len(t.measurement.candidate) == 5 for t in done)
        # an error of ours in the actor comes back as itself (the tuner counts it as a failed trial)
        with pytest.raises(LearningError, match="unknown knobs"):
            meas.measure({"no_such_knob": 1})
    finally:
        meas.close()


def test_no_ray_running_is_a_clear_error():
    import ray

    from wasm_torch.learn.ray_measure import RayMeasurer

    if ray.is_initialized():  # the module fixture's Ray is still up when run in one session
        ray.shutdown()
    with pytest.raises(LearningError, match="needs a running Ray"):
        RayMeasurer(torch.nn.Linear(2, 2), (torch.randn(1, 2),), CompileSpace())
