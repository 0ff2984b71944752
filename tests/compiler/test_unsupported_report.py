"""Unsupported ops are reported all at once (op, count, first source line, rewrite), and float16 /
bfloat16 / float64 tensors are refused with the fix, or taken exactly when they are only cast to
float32 — never silently changed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import wasm_torch
from wasm_torch.compiler.check import compare, reference_outputs
from wasm_torch.compiler.frontend import from_torch
from wasm_torch.compiler.ir.interp import run
from wasm_torch.errors import ExportError, UnsupportedOpError


class ThreeGaps(nn.Module):
    def forward(self, x):
        a = torch.special.bessel_j0(x)  # no lowering
        b = torch.special.bessel_j0(x * 2)  # the same op again: counted, reported once
        c = torch.lgamma(x)  # a second missing op
        d = torch.nn.functional.grid_sample(x[None, None], torch.zeros(1, 2, 2, 2), align_corners=False)  # a third
        return a + b + c + d.sum() + x.exp()  # exp is fine; nothing after a gap is reported as a gap


def test_every_unsupported_op_in_one_error():
    with pytest.raises(UnsupportedOpError) as e:
        from_torch(ThreeGaps(), (torch.randn(3, 4),))
    msg = str(e.value)
    problems = {p.op: p for p in e.value.problems}
    assert problems["aten.special_bessel_j0.default"].count == 2
    assert "aten.lgamma.default" in problems
    assert "aten.grid_sampler_2d.default" in problems
    assert "ThreeGaps uses 3 ops" in msg
    assert "test_unsupported_report.py:" in problems["aten.lgamma.default"].first_line  # the user's line
    assert "rewrite:" in msg and "grid_sample" in msg
    assert "aten.exp" not in msg and "aten.add" not in msg
    assert "docs/ops.md" in msg


class Cond(nn.Module):
    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda x: x + 1, lambda x: x - 1, (x,))


def test_torch_cond_gets_a_rewrite():
    with pytest.raises(UnsupportedOpError) as e:
        from_torch(Cond(), (torch.randn(3),))
    assert "torch.where" in str(e.value) and "cond" in str(e.value)


class DataIf(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x + 1
        return x - 1


def test_data_dependent_if_suggests_where():
    with pytest.raises(ExportError) as e:
        from_torch(DataIf(), (torch.randn(3),))
    assert "torch.where" in str(e.value)


class Item(nn.Module):
    def forward(self, x):
        return x * int(x.argmax().item())


def test_item_is_reported_with_its_rewrite():
    with pytest.raises((UnsupportedOpError, ExportError)) as e:
        from_torch(Item(), (torch.randn(5),))
    assert "torch.where" in str(e.value) or "item" in str(e.value)


def test_lowering_refusals_are_collected_too():
    class M(nn.Module):
        def forward(self, x, i):
            y = x.scatter_reduce(1, i, x, "mean")  # the op is known, this variant is refused
            return torch.special.bessel_j0(y)

    with pytest.raises(UnsupportedOpError) as e:
        from_torch(M(), (torch.randn(2, 3), torch.zeros(2, 3, dtype=torch.long)))
    msg = str(e.value)
    assert "scatter_reduce with reduce='mean'" in msg
    assert "special_bessel_j0" in msg  # an op without a lowering is its own gap, whatever feeds it
    assert "M uses 2 ops" in msg


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_double_precision_inputs_are_refused_clearly(dtype):
    model = nn.Sequential(nn.Linear(4, 3)).to(dtype)
    with pytest.raises(UnsupportedOpError) as e:
        from_torch(model, (torch.randn(2, 4, dtype=dtype),))
    msg = str(e.value)
    name = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float64: "float64"}[dtype]
    assert f"is {name}" in msg and "float32" in msg
    assert "model.float()" in msg or "x.float()" in msg


def test_half_model_with_float_input_is_refused():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3).half()

        def forward(self, x):
            return self.lin(x.half()).float()

    with pytest.raises(UnsupportedOpError) as e:
        from_torch(M(), (torch.randn(2, 4),))
    assert "float16" in str(e.value) and "model.float()" in str(e.value)


class DoubleTable(nn.Module):
    """A float64 buffer only ever cast to float32: exactly what torch computes with."""

    def __init__(self):
        super().__init__()
        self.register_buffer("table", torch.linspace(0, 1, 5, dtype=torch.float64) / 3)

    def forward(self, x):
        return x * self.table.float()


@pytest.mark.toolchain
def test_float64_buffer_cast_to_float32_is_exact(tmp_path):
    model, x = DoubleTable(), torch.randn(2, 5)
    g = from_torch(model, (x,))
    got = run(g, {g.inputs[0]: x.numpy()})
    assert compare(got, reference_outputs(model, (x,)), 0, 0)["ok"]  # bit-exact
    m = wasm_torch.load(wasm_torch.compile(model, (x,), tmp_path / "t", atol=0, rtol=0))
    assert compare([m(x.numpy())], reference_outputs(model, (x,)), 0, 0)["ok"]
