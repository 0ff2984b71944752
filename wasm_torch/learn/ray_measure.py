"""Trials measured on the machine they target, through Ray: `tune(..., measurer=RayMeasurer(...))`.

A tuning result holds only for the machine it was measured on, so when tuning fans out over many
machines (a tune per target: browsers' hosts, edge nodes, serving boxes), each target's trials run
there. `RayMeasurer` places one Ray actor on the target — chosen by a Ray custom resource the
target's `ray start --resources '{"machine:edge-a": 1}'` advertises — and that actor owns a
`CompileMeasurer`: it compiles the default configuration once, then compiles, validates against
PyTorch and times every trial on its own cores. The tuner (Optuna, the pattern memory, the
confirmation runs) stays in the driver; only `measure(config)` crosses the network, and only the
Measurement (sample times) comes back.

What does not cross: early stopping. Optuna's pruner needs the running ratio after every round,
which would be a round trip per round; a Ray trial always runs its full rounds (`report` ignored).

Ray is a dependency of the server's scale-out (requirements.txt); it is imported only here. The
model and inputs travel to the actor through Ray's object store (cloudpickle): they are the caller's
own objects, never data read from elsewhere. Start Ray before, e.g. with
`wasm_torch.serve.ray.env.init_ray(...)` (which keeps wasmtime's trap handling intact).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import LearningError, WasmTorchError
from .measure import CompileMeasurer, Measurement, Report


class _MeasureActor:
    """Runs in the target machine's Ray worker: one CompileMeasurer for the whole tune."""

    def __init__(self, model: Any, example_inputs: tuple, space: Any, dynamic_shapes: Any, rounds: int) -> None:
        self.m = CompileMeasurer(model, example_inputs, space, dynamic_shapes, rounds=rounds)

    def measure(self, config: dict[str, Any]) -> Measurement:
        m = self.m.measure(config)
        return replace(m, info={**m.info, "host": socket.gethostname(), "pid": os.getpid()})

    def close(self) -> None:
        self.m.close()


class RayMeasurer:
    """A `Measurer` whose trials run in a Ray actor on the target machine.

    resources: the Ray resources that pick the target (e.g. {"machine:edge-a": 1}); None places the
    actor anywhere in the cluster (one machine: this one). num_cpus: cores the actor reserves
    (measurement is single-threaded; 1 keeps other work off that core in Ray's accounting).
    timeout_s: a trial (compile + validate + timing) that takes longer is a LearningError."""

    def __init__(
        self,
        model: Any,
        example_inputs: tuple,
        space: Any,
        dynamic_shapes: Any = None,
        *,
        resources: Mapping[str, float] | None = None,
        num_cpus: float = 1,
        rounds: int = 41,
        timeout_s: float = 900.0,
    ) -> None:
        import ray

        if not ray.is_initialized():
            raise LearningError("RayMeasurer needs a running Ray: call ray.init (or init_ray) first")
        self._ray, self.timeout_s = ray, timeout_s
        actor = ray.remote(num_cpus=num_cpus, resources=dict(resources or {}))(_MeasureActor)
        self._actor = actor.remote(model, tuple(example_inputs), space, dynamic_shapes, rounds)

    def measure(self, config: Mapping[str, Any], report: Report | None = None) -> Measurement:
        from ray.exceptions import GetTimeoutError, RayError, RayTaskError

        ref = self._actor.measure.remote(dict(config))
        try:
            return self._ray.get(ref, timeout=self.timeout_s)
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, WasmTorchError):
                raise cause from None  # a configuration that does not build or validate: a trial's result
            raise LearningError(f"the trial failed in its Ray worker: {cause or e}") from None
        except GetTimeoutError:
            self._ray.kill(self._actor)  # it is stuck in that trial; later trials fail fast
            raise LearningError(f"a trial took longer than {self.timeout_s:g} s on its target machine") from None
        except RayError as e:  # the actor or its machine is gone
            raise LearningError(f"the target machine's measuring actor is unavailable: {e}") from None

    def close(self) -> None:
        try:
            self._ray.get(self._actor.close.remote(), timeout=60)
        finally:
            self._ray.kill(self._actor)
