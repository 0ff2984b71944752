"""DAG analyses of the model graph and min-cut pipeline partitioning (docs/partitioning.md).

    from wasm_torch.analyze import Dag, partition, Pipeline
    p = partition(graph, cost, stages=4)              # contiguous stages, fewest crossing bytes
    art = wasm_torch.compile(model, inputs, "out/m4", stages=4)   # one artifact per stage + pipeline.json
    ys = Pipeline("out/m4").run_many(batches, threads=2)          # stages on threads, micro-batches in flight

dag.py indexes an IR graph; analyses.py (depth, causal cone, critical path, parallel branches),
mincut.py (flow network, min-cut gates), lorentz.py (hyperbolic depth embedding), btsp.py (temporal
score) are the per-node analyses; search.py + partition.py the exact partitioner (bruteforce.py its
reference); incremental.py, events.py, tension.py the update loop; pipeline_manifest.py + runner.py
the pipeline format and its local runner (js/pipeline.mjs is the browser one); draw.py the picture.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule. Imported on first use (PEP 562), so `wasm_torch.analyze.cli` (which the
# `wasm-torch` command imports) costs nothing in a runtime-only install without sympy or networkx.
_WHERE = {
    **dict.fromkeys(["affected_outputs", "causal_cone", "critical_path", "parallel_branches", "schedule_order",
                     "topological_depth"], "analyses"),
    **dict.fromkeys(["TemporalScore", "attribute"], "btsp"),
    **dict.fromkeys(["flops_cost", "scaled_cost", "table_cost"], "costs"),
    "Dag": "dag",
    **dict.fromkeys(["EventBus", "PartitionChanged", "TensionEvent", "TuningBudgetRequest"], "events"),
    **dict.fromkeys(["PartitionSession", "graph_fingerprint"], "incremental"),
    **dict.fromkeys(["depth_embedding", "pattern_features"], "lorentz"),
    "MinCut": "mincut",
    **dict.fromkeys(["Partition", "Partitioner", "PartitionOptions", "Stage", "partition"], "partition"),
    "read_pipeline": "pipeline_manifest",
    "Pipeline": "runner",
    **dict.fromkeys(["BoundaryBudget", "PartitionCache", "RepartitionOnTension", "TuningBudgetSink"], "tension"),
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'wasm_torch.analyze' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)


__all__ = [
    "BoundaryBudget",
    "Dag",
    "EventBus",
    "MinCut",
    "Partition",
    "PartitionCache",
    "PartitionChanged",
    "PartitionOptions",
    "PartitionSession",
    "Partitioner",
    "Pipeline",
    "RepartitionOnTension",
    "Stage",
    "TemporalScore",
    "TensionEvent",
    "TuningBudgetRequest",
    "TuningBudgetSink",
    "affected_outputs",
    "attribute",
    "causal_cone",
    "critical_path",
    "depth_embedding",
    "flops_cost",
    "graph_fingerprint",
    "parallel_branches",
    "partition",
    "pattern_features",
    "read_pipeline",
    "scaled_cost",
    "schedule_order",
    "table_cost",
    "topological_depth",
]
