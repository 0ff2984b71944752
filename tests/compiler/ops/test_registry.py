"""Every IR op has every facet, registered in one record (wasm_torch/compiler/ir/op.py)."""

from __future__ import annotations

import numpy as np
import sympy

import wasm_torch.compiler  # noqa: F401  (registers the ops)
from wasm_torch.compiler.ir.graph import Node, TensorType
from wasm_torch.compiler.ir.op import OPS, OpDef, in_group, register

# Elementwise ops that have no f32x4 form: their results are bool or they need libm-grade scalar
# code (log, sin, ...); a loop containing one is emitted as scalar C.
NO_VECTOR = {
    "log", "log1p", "sin", "cos", "floordiv", "remainder", "bitand", "logical_not",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "where", "cast",
    "fmod", "sign", "expm1", "log2",
    "f16_to_f32",  # reads halves: its loops are never all-f32, so never f32x4
}  # fmt: skip


def test_every_op_has_every_facet():
    assert len(OPS) >= 80
    for name, d in OPS.items():
        assert isinstance(d, OpDef) and d.name == name
        assert callable(d.infer) and callable(d.interp) and callable(d.flops), name
        assert callable(d.emit) or d.group == "alias", f"{name} has no C emitter"
        if d.group == "elementwise":
            assert callable(d.c_expr), f"elementwise {name} has no scalar C template"
            assert (d.vector is None) == (name in NO_VECTOR), f"{name}: vector form {d.vector} vs NO_VECTOR"


def test_elementwise_templates_render_for_their_dtypes():
    for name, d in OPS.items():
        if d.group != "elementwise" or name in ("clamp", "leaky_relu", "cast"):
            continue
        t = d.c_expr("f32", "f32", {}) if name not in ("bitand",) else d.c_expr("i32", "i32", {})
        assert "{0}" in t, (name, t)


def test_flops_are_symbolic_over_dynamic_dims():
    s = sympy.Symbol("seq", integer=True, positive=True)
    a, w = TensorType("f32", (s, 64)), TensorType("f32", (64, 32))
    n = Node("matmul", ("a", "w"), ("y",))
    assert sympy.expand(OPS["matmul"].flops(n, [a, w], [TensorType("f32", (s, 32))]) - 2 * s * 32 * 64) == 0


def test_registering_twice_or_without_an_emitter_is_refused():
    d = OPS["add"]
    for bad in (d, OpDef("x_no_code", "kernel", d.infer, d.interp, None, d.flops)):
        try:
            register(bad)
        except Exception as e:  # GraphError
            assert "registered twice" in str(e) or "no C emitter" in str(e)
        else:
            raise AssertionError(f"{bad.name} was accepted")
    assert not in_group("x_no_code", "kernel")


def test_interp_facet_is_the_meaning():
    x = np.array([-1.5, 0.0, 2.0], np.float32)
    (y,) = OPS["relu"].interp(Node("relu", ("x",), ("y",)), [x], {}, [(3,)])
    assert y.tolist() == [0.0, 0.0, 2.0]
