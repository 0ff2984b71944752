"""The elementwise fusion pass (passes/fuse_elementwise.py) and its SIMD codegen (codegen/fused.py).

What may fuse and what must not, on IR graphs (no toolchain); then fused chains through the whole
compile against torch — broadcasting, scalars, mixed dtypes, odd and dynamic lengths — with many
cases in one module per compile to keep it cheap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

import wasm_torch
from wasm_torch.compiler import CompileOptions
from wasm_torch.compiler.check import compare, reference_outputs
from wasm_torch.compiler.frontend import from_torch
from wasm_torch.compiler.ir import verify
from wasm_torch.compiler.ir.interp import run
from wasm_torch.compiler.passes.fuse_elementwise import fuse_elementwise
from wasm_torch.compiler.pipeline import run_passes
from wasm_torch.zoo import build


def _passes(g, skip: str = ""):
    return run_passes(g, CompileOptions().without(skip) if skip else CompileOptions())


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:  # GPT-2's NewGELUActivation, spelled out
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Chains(nn.Module):
    """Many fusable trees at once: broadcasting, scalars, comparisons / where / casts, ints."""

    def forward(self, x, row, col, i):
        a = _gelu_tanh(x) * row + col  # (R, C) with (C,) and (R, 1)
        b = torch.sigmoid(x * 1.5 - 0.25) * torch.exp(-x.abs()) + F.silu(x) - torch.erf(x / 3)
        c = torch.where(x > row, x * 2, col - x).clamp(-1.5, 2.0) + (x < 0).float() * 0.5
        d = F.hardswish(x) + F.leaky_relu(x, 0.1) + torch.maximum(x, col) - torch.minimum(x, 0.3 * row)
        e = ((i * 3 + 1) % 5 - i // 2).float() * torch.rsqrt(x * x + 1) + torch.sqrt(x.abs()) / (x.abs() + 1)
        f = torch.tanh(F.gelu(x) * x.pow(2) + F.relu(x) ** 0.5)
        return a, b, c, d, e, f


def _chain_inputs(rows: int, cols: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(rows, cols, generator=g) * 3,
        torch.randn(cols, generator=g),
        torch.randn(rows, 1, generator=g),
        torch.randint(-9, 9, (rows, cols), generator=g),
    )


def test_chains_fuse_to_one_node_each_and_keep_the_meaning():
    inputs = _chain_inputs(3, 37)
    g = from_torch(Chains().eval(), inputs)
    named = {n: x.numpy() for n, x in zip(g.inputs, inputs, strict=True)}
    unfused, fused = _passes(g, skip="fuse_elementwise"), _passes(g)
    # One node per output where every op has an f32x4 form (a, b, d, f). In c (where, comparisons, a
    # bool cast) and e (integer arithmetic) the ops without one form scalar groups of their own, so the
    # float math after them stays one vector loop; `0.3 * row`, a (C,) value read by an (R, C) op,
    # stays apart.
    assert fused.op_counts() == {"fused_elementwise": 9, "mul": 2, "sub": 1}
    last = {o: n for n in fused.nodes for o in n.outputs}
    programs = [[s.op for s in last[o].attrs["program"]] for o in fused.outputs]
    assert programs[2] == ["clamp", "mul", "add"] and "where" not in programs[2]
    assert not {"floor_divide", "remainder", "where", "gt", "lt"} & {op for p in programs for op in p}
    assert len(unfused.nodes) > 40
    want = reference_outputs(Chains().eval(), inputs)
    assert compare(run(fused, named), want, 1e-5, 1e-4)["ok"]
    assert compare(run(unfused, named), want, 1e-5, 1e-4)["ok"]


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def test_a_value_read_by_several_ops_of_one_group_is_computed_inside_it():
    """x + b feeds three ops of the GELU: a DAG, still one loop, the add computed once per element."""

    def fn(x, b):
        return _gelu_tanh(x + b)

    inputs = (torch.randn(4, 10), torch.randn(10))
    g = _passes(from_torch(_Fn(fn).eval(), inputs))
    assert g.op_counts() == {"fused_elementwise": 1}
    program = g.nodes[0].attrs["program"]
    assert [s.op for s in program].count("add") == 3  # x + b, x + 0.044715 x³, 1 + tanh
    named = {n: x.numpy() for n, x in zip(g.inputs, inputs, strict=True)}
    assert compare(run(g, named), [fn(*inputs).numpy()], 1e-6, 1e-5)["ok"]


class Shared(nn.Module):
    def forward(self, x, y):
        t = torch.exp(x) * 2  # read by two consumers: must stay a node
        u = torch.tanh(x).sum(-1, keepdim=True)  # a reduction is not elementwise
        v = x.sum(-1, keepdim=True) + 1  # (R, 1): a different shape from its consumer's (R, C)
        out = torch.sigmoid(x) + 1  # a graph output, also read by the next line
        return t + y, t - y, out, out * u * v


def test_values_read_by_two_groups_graph_outputs_and_smaller_shapes_stay_apart():
    inputs = (torch.randn(4, 6), torch.randn(4, 6))
    g = _passes(from_torch(Shared().eval(), inputs), skip="fuse_elementwise")
    f = fuse_elementwise(g)
    verify(f)
    produced = {o for n in f.nodes for o in n.outputs}
    t = next(n for n in g.nodes if n.op == "mul" and g.nodes[g.nodes.index(n) - 1].op == "exp").outputs[0]
    assert t in produced  # exp·2 is read twice: materialised once
    assert all(o in produced for o in g.outputs)  # graph outputs are never swallowed
    v = next(n for n in g.nodes if n.op == "add" and g.types[n.outputs[0]].shape == (4, 1)).outputs[0]
    assert v in produced  # a (4, 1) value broadcast into (4, 6) would be recomputed per column
    fused = [n for n in f.nodes if n.op == "fused_elementwise"]
    assert fused and all(len(n.attrs["program"]) >= 2 for n in fused)
    named = {n: x.numpy() for n, x in zip(g.inputs, inputs, strict=True)}
    assert compare(run(f, named), reference_outputs(Shared().eval(), inputs), 1e-6, 1e-5)["ok"]


def test_gpt2_gelu_chain_becomes_one_node():
    model, example, _ = build("gpt2")
    g = from_torch(model, example)
    unfused, fused = _passes(g, skip="fuse_elementwise"), _passes(g)
    assert len(fused.nodes) < len(unfused.nodes)
    gelus = [
        n for n in fused.nodes if n.op == "fused_elementwise" and "tanh" in [s.op for s in n.attrs["program"]]
    ]
    assert len(gelus) == 2  # one per layer: pow, mul, add, mul, tanh, add, mul, mul
    assert all(len(n.attrs["program"]) >= 8 for n in gelus)
    assert len(unfused.nodes) - len(fused.nodes) >= 2 * 7


@pytest.mark.toolchain
@pytest.mark.wasm
@pytest.mark.parametrize("dynamic", [False, True])
def test_fused_chains_compile_and_match_torch(tmp_path, dynamic):
    """Static 37 columns: f32x4 with an overlapping last vector. Dynamic: vectors + scalar tail, and
    lengths below 4. Checked against float64 torch (float32 torch's own GELU is off by 2.5e-6 here)."""
    model = Chains().eval()
    c = Dim("c", min=1, max=64)
    dyn = {"x": {1: c}, "row": {0: c}, "col": None, "i": {1: c}} if dynamic else None
    art = wasm_torch.compile(
        model, _chain_inputs(3, 37), tmp_path / "chains", dynamic_shapes=dyn, atol=1e-5, rtol=1e-5
    )
    assert art.report["ops"] == {"fused_elementwise": 9, "mul": 2, "sub": 1}  # as in the test above
    m = wasm_torch.load(art)
    for cols in (1, 2, 3, 4, 5, 8, 37) if dynamic else (37,):
        inputs = _chain_inputs(3, cols, seed=cols)
        exact = [x.double() if x.is_floating_point() else x for x in inputs]  # torch in float64
        res = compare(list(m(*[x.numpy() for x in inputs])), reference_outputs(model, exact), 2e-6, 1e-5)
        assert res["ok"], (cols, res)


class Unary(nn.Module):
    def forward(self, x):
        return F.gelu(x) * torch.sigmoid(x) + torch.tanh(x) * torch.exp(-(x * x))


@pytest.mark.toolchain
@pytest.mark.wasm
def test_dynamic_length_vector_lanes_equal_scalar_tail(tmp_path):
    """Length 2·n is not known to be a multiple of 4: vectors, then a scalar tail. An element must get
    the same bits whether it lands in a vector lane (long input) or in the tail (short input)."""
    x = torch.randn(2, 9) * 4
    n = Dim("n", min=1, max=64)
    art = wasm_torch.compile(Unary().eval(), (x,), tmp_path / "dyn", dynamic_shapes={"x": {1: n}}, atol=1e-6)
    m = wasm_torch.load(art)
    long = torch.randn(1, 22) * 4
    got_long = m(long.reshape(2, 11).numpy())
    want = Unary()(long.reshape(2, 11)).numpy()
    assert np.abs(got_long - want).max() < 1e-6
    for k in (1, 2, 3, 5, 6, 7):  # the first 2k elements of the same data: tails of 2k mod 4
        got = m(long.reshape(-1)[: 2 * k].reshape(2, k).numpy()).reshape(-1)
        same = got_long.reshape(-1)[: 2 * k]
        np.testing.assert_array_equal(got.view(np.uint32), same.view(np.uint32), err_msg=f"length {2 * k}")
