"""The memory plan (and weight packing) on lowered graphs: no live buffers overlap, reuse happens (no toolchain needed)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from wasm_torch.compiler import lower
from wasm_torch.compiler.codegen.memory_plan import plan_memory
from wasm_torch.compiler.ir.graph import evaluate_shape
from wasm_torch.compiler.passes.pack_weights import PANEL, pack


def test_pack_round_trip_with_partial_panel():
    n = PANEL + 3
    w = np.arange(5 * n, dtype=np.float32).reshape(5, n)
    p = pack(w)
    assert p.shape == (2, 5, PANEL)
    unpacked = p.transpose(1, 0, 2).reshape(5, 2 * PANEL)
    np.testing.assert_array_equal(unpacked[:, :n], w)
    assert not unpacked[:, n:].any()


def _planned(model, inputs):
    g = lower(model, inputs)
    return g, plan_memory(g)


def test_memory_plan_never_overlaps_live_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(32, 32), nn.GELU()) for _ in range(6)]).eval()
    g, plan = _planned(model, (torch.randn(4, 32),))
    sizes = {v: int(np.prod(evaluate_shape(t.shape, {}))) * t.itemsize for v, t in g.types.items()}
    live: dict[str, tuple[int, int]] = {}
    for i, n in enumerate(g.nodes):
        for o in n.outputs:
            live[o] = (i, i)
        for v in n.inputs:
            if v in live:
                live[v] = (live[v][0], i)
    for o in g.outputs:
        live[o] = (live[o][0], len(g.nodes))
    bufs = [(v, plan.offsets[v], sizes[v], *live[v]) for v in live if v in plan.offsets]
    for a in bufs:
        for b in bufs:
            if a[0] < b[0] and not (a[4] < b[3] or b[4] < a[3]):  # both live at once
                assert a[1] + a[2] <= b[1] or b[1] + b[2] <= a[1], (a, b)
    assert plan.arena_bytes < plan.unplanned_bytes  # reuse happened


def test_constant_folding_pretransposes_and_packs_weights():
    g, _ = _planned(nn.Linear(8, 3).eval(), (torch.randn(2, 8),))
    assert [n.op for n in g.nodes] == ["matmul_packed"]
    assert not any(c.endswith("weight") for c in g.consts)  # the unpacked weight was dropped
