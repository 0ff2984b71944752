"""A compiler that learns: autotuning of the compile options on this machine, and the memory that
makes the next model's tuning start where similar models ended (docs/learning.md).

    from wasm_torch.learn import tune, compile_tuned
    result = tune(model, (x,), budget=20)                # Optuna over CompileOptions, measured here
    compile_tuned(model, (x,), "out/m", result)           # manifest gets a `tuning` record

    features.py / machine.py   pattern embedding of (graph, shapes, machine)
    trajectory.py              10,000-entry FIFO ring buffer of (pattern, configuration, latency)
    index.py / memory.py       k-means++ pattern index; PatternMemory (SONA): pre_query,
                               post_query, background_learn; storage.py: pickle-free files
    costmodel.py               MicroLoRA cost model (rank-2 adapters per op group) + EWC
    reasoning.py               ReasoningBank: Q-learning over configuration changes, JSON
    space.py / compile_space.py  search spaces (the compiler's, read off CompileOptions)
    measure.py / tuner.py      interleaved noise-aware measurement; the Optuna-driven tuner
    background.py              bounded consolidation chunks (gated by the circadian controller
                               in `wasm-torch serve`, see serve/learning.py)
    cli.py                     `wasm-torch tune | memory` (deploy's parser: deploy/cli.py)

Importing this package imports nothing heavy; the names below load their modules on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "tune": "tuner",
    "compile_tuned": "tuner",
    "TuneResult": "tuner",
    "PatternMemory": "memory",
    "ReasoningBank": "reasoning",
    "MicroLoRACostModel": "costmodel",
    "BackgroundLearner": "background",
    "CompileSpace": "compile_space",
    "SearchSpace": "space",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
