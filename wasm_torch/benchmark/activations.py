"""The largest activation set of a model: the most bytes that must be live at once.

The memory plan (passes/memory_plan.py) packs every activation buffer into one arena by liveness;
its `arena_bytes` can exceed the lower bound, the peak over program points of the summed sizes
of the buffers live there. This module recomputes that bound with the same liveness rules (graph
inputs live from the start, outputs to the end, aliases share their root's storage), so the
benchmark can report arena and linear memory against it.
"""

from __future__ import annotations

from typing import Any

from ..ir.graph import Graph, evaluate_shape, numel
from ..ir.ops import ALIAS
from ..passes import PASSES
from ..passes.memory_plan import ALIGN


def peak_live_bytes(g: Graph) -> int:
    """Max over nodes of the bytes of all non-constant buffers live at that node (64-byte aligned)."""
    maxb = g.max_bindings()

    def size(v: str) -> int:
        n = max(1, numel(evaluate_shape(g.types[v].shape, maxb))) * g.types[v].itemsize
        return (n + ALIGN - 1) // ALIGN * ALIGN

    root: dict[str, str] = {}
    for n in g.nodes:
        if n.op in ALIAS:
            root[n.outputs[0]] = root.get(n.inputs[0], n.inputs[0])
    find = lambda v: root.get(v, v)  # noqa: E731
    first = {v: -1 for v in g.inputs}
    last = {v: -1 for v in g.inputs}
    for i, n in enumerate(g.nodes):
        for o in n.outputs:
            if find(o) == o:
                first[o] = last[o] = i
        for v in n.inputs:
            if v and find(v) in last:
                last[find(v)] = max(last[find(v)], i)
    for o in g.outputs:
        if find(o) in last:
            last[find(o)] = len(g.nodes)
    live = [0] * (len(g.nodes) + 2)  # index 0 = before the first node
    for v in first:
        for i in range(first[v] + 1, last[v] + 2):
            live[i] += size(v)
    return max(live, default=0)


def largest_activation_set(model: Any, example_inputs: tuple) -> int:
    """Export `model` the way compile() does, run the passes, and return peak_live_bytes."""
    from ..frontend import from_torch

    g = from_torch(model, example_inputs, None)
    for _, run_pass in PASSES:
        g = run_pass(g)
    return peak_live_bytes(g)
