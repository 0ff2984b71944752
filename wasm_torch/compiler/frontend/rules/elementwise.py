"""Elementwise lowerings added for coverage: fmod, pow with a scalar base (`10000 ** t`), round,
trunc, sign, expm1, log2, elu / selu / celu, clamp with tensor bounds."""

from __future__ import annotations

import torch

from ....errors import UnsupportedOpError
from ..aten import _args, _binary, _unary, rule
from ..context import Lowering

rule("fmod.Scalar", "fmod.Tensor")(_binary("fmod"))
rule("pow.Scalar")(_binary("pow"))
for _op in ("round", "trunc", "sign", "expm1", "log2"):
    rule(f"{_op}.default")(_unary(_op))


@rule("round.decimals")
def _round_decimals(L: Lowering, fx: torch.fx.Node) -> str:
    d = fx.kwargs.get("decimals", fx.args[1] if len(fx.args) > 1 else 0)
    x = L.value(fx.args[0])
    if d == 0:
        return L.emit("round", [x])
    s = L.operand(float(10.0**d), "f32")
    return L.emit("div", [L.emit("round", [L.emit("mul", [x, s])]), s])


@rule("elu.default")
def _elu(L: Lowering, fx: torch.fx.Node) -> str:
    """x > 0 ? scale·x : scale·alpha·expm1(input_scale·x) (ELU, SELU and CELU all lower to this)."""
    args = _args(fx, 1.0, 1.0, 1.0)
    x = L.value(args[0])
    alpha, scale, in_scale = float(args[1]), float(args[2]), float(args[3])
    if L.type_of(x).dtype != "f32":
        raise UnsupportedOpError("elu on non-float tensors")
    f = lambda v: L.operand(v, "f32")  # noqa: E731
    pos = L.emit("mul", [x, f(scale)]) if scale != 1 else x
    xi = L.emit("mul", [x, f(in_scale)]) if in_scale != 1 else x
    neg = L.emit("mul", [L.emit("expm1", [xi]), f(alpha * scale)])
    return L.emit("where", [L.emit("gt", [x, f(0.0)]), pos, neg])


@rule("clamp.Tensor")
def _clamp_tensor(L: Lowering, fx: torch.fx.Node) -> str:
    args = _args(fx, None, None)
    dt = L.out_dtype(fx)
    y = L.operand(args[0], dt)
    if args[1] is not None:
        y = L.emit("maximum", [y, L.operand(args[1], dt)])
    if args[2] is not None:
        y = L.emit("minimum", [y, L.operand(args[2], dt)])
    return y
