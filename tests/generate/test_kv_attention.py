"""The `kv_attention` op on its own: the NumPy meaning (ir) and the wasm kernel against the torch op.

The torch op `torch.ops.wasm_torch.kv_attention` is a pure function (the caches come back updated);
compiled, the updated caches share their inputs' buffers. Each case is one small module compiled
with `wasm_torch.compile` (validated against torch eager), then run at many (past, T) positions:
query tiles of 4 rows and tails, keys crossing the 128-key tiles, head dims off the 8-wide tiles,
grouped-query heads, value dims different from key dims.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.export import Dim

import wasm_torch
from wasm_torch.compiler.frontend.rules.kv_cache import kv_attention
from wasm_torch.compiler.ir.graph import Node
from wasm_torch.compiler.ir.op import op_def
from wasm_torch.errors import GraphError, IndexOutOfRange

NAMES = ("q", "k", "v", "p", "kc", "vc")
CASES = {  # name: (Hq, Hkv, D, Dv, max_context, cache stride)
    "gqa4_d12_long": (4, 1, 12, 12, 300, 304),
    "gqa2_d80_dv64": (6, 3, 80, 64, 40, 40),
    "mha_d8_full": (2, 2, 8, 8, 8, 8),
}


class KV(torch.nn.Module):
    def __init__(self, scale: float, max_context: int):
        super().__init__()
        self.scale, self.max_context = scale, max_context

    def forward(self, q, k, v, past, kc, vc):
        return kv_attention(q, k, v, past, kc, vc, self.scale, self.max_context)


def _inputs(rng, Hq, Hkv, D, Dv, CS, T, past):
    f = lambda *s: torch.from_numpy(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    return (f(1, T, Hq, D), f(1, T, Hkv, D), f(1, T, Hkv, Dv), torch.tensor([past]), f(1, Hkv, D, CS), f(1, Hkv, CS, Dv))


def test_numpy_meaning_equals_the_torch_op():
    rng = np.random.default_rng(0)
    for Hq, Hkv, D, Dv, C, CS in CASES.values():
        for T, past in ((1, 0), (3, min(5, C - 3)), (1, C - 1)):
            xs = _inputs(rng, Hq, Hkv, D, Dv, CS, T, past)
            want = kv_attention(*xs, D**-0.5, C)
            node = Node("kv_attention", NAMES, ("o", "kc2", "vc2"), {"scale": D**-0.5, "max_context": C})
            got = op_def("kv_attention").interp(node, [x.numpy() for x in xs], {}, [])
            for g, w in zip(got, want, strict=True):
                np.testing.assert_allclose(g, w.numpy(), atol=2e-6, rtol=1e-5)


def test_numpy_meaning_refuses_a_position_outside_the_cache():
    xs = _inputs(np.random.default_rng(1), 2, 2, 8, 8, 8, 2, 7)
    node = Node("kv_attention", NAMES, ("o", "kc2", "vc2"), {"scale": 1.0, "max_context": 8})
    with pytest.raises(GraphError, match="does not fit max_context"):
        op_def("kv_attention").interp(node, [x.numpy() for x in xs], {}, [])
    with pytest.raises(ValueError, match="does not fit max_context"):
        kv_attention(*xs, 1.0, 8)


@pytest.mark.toolchain
@pytest.mark.wasm
@pytest.mark.parametrize("case", sorted(CASES))
def test_wasm_kernel_equals_the_torch_op(case, tmp_path):
    Hq, Hkv, D, Dv, C, CS = CASES[case]
    rng = np.random.default_rng(2)
    model = KV(D**-0.5, C).eval()
    T = Dim("T", min=1, max=C)
    dyn = ({1: T}, {1: T}, {1: T}, None, None, None)
    art = wasm_torch.compile(model, _inputs(rng, Hq, Hkv, D, Dv, CS, min(3, C), 0), tmp_path / case,
                             dynamic_shapes=dyn, options=wasm_torch.CompileOptions(relaxed=False))  # fmt: skip
    assert art.manifest.raw["ops"].get("kv_attention") == 1
    m = wasm_torch.load(art, threads=1)
    positions = sorted({(1, 0), (4, 0), (5, 1), (1, C - 1), (C, 0), (C // 2, C - C // 2), (min(C, 130), 0),
                        (1, min(C - 1, 129)), (3, C - 3), (7, max(0, C - 140))})  # fmt: skip
    for T_, past in positions:
        if T_ < 1 or past < 0 or past + T_ > C:
            continue
        xs = _inputs(rng, Hq, Hkv, D, Dv, CS, T_, past)
        want = kv_attention(*xs, D**-0.5, C)
        got = m(*[x.numpy() for x in xs])
        for g, w, what in zip(got, want, ("out", "k cache", "v cache"), strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=2e-5, rtol=1e-4, err_msg=f"{case} T={T_} past={past}: {what}")
    with pytest.raises(IndexOutOfRange):  # past + T over the capacity: a trap, nothing written
        m(*[x.numpy() for x in _inputs(rng, Hq, Hkv, D, Dv, CS, 2, C - 1)])
