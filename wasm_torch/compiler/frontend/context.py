"""The lowering context: turns torch.fx values into IR values while an exported graph is walked.

Each aten lowering (see `aten.py`) receives a `Lowering` and the fx node, and calls `emit` to
append IR nodes. Python scalars become 0-d constants; SymInts become sympy expressions over the
graph's symbols; dtypes are checked against what torch says each node produces.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import sympy
import torch

from ...errors import GraphError, UnsupportedOpError
from ..ir.graph import DTYPES, Dim, Node, TensorType, dim
from ..ir.op import infer

TORCH_TO_IR = {
    torch.float32: "f32",
    torch.int64: "i64",
    torch.int32: "i32",
    torch.uint8: "u8",
    torch.int8: "i8",
    torch.bool: "bool",
}
_RANK = {"bool": 0, "u8": 1, "i8": 1, "i32": 2, "i64": 3, "f32": 4}


def ir_dtype(dtype: torch.dtype, where: str = "") -> str:
    if dtype not in TORCH_TO_IR:
        hint = " (call model.float() / cast inputs to float32)" if dtype.is_floating_point else ""
        raise UnsupportedOpError(f"dtype {dtype} is not supported{hint}{where}; supported: {sorted(_RANK)}")
    return TORCH_TO_IR[dtype]


def promote(*dtypes: str) -> str:
    return max(dtypes, key=lambda d: _RANK[d])


def source_line(node: torch.fx.Node) -> str:
    """The innermost user frame of the export stack trace: 'file.py:12  code'."""
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in \S+\n\s*(.*)', trace)
    frames = [f for f in frames if not f[0].startswith("<eval_with_key")] or frames  # torch's generated code
    if not frames:
        return ""
    file, line, code = frames[-1]
    return f"{file}:{line}  {code.strip()}"


class Lowering:
    def __init__(self, symbol_map: dict[sympy.Symbol, sympy.Symbol]):
        self.symbol_map = symbol_map  # torch's shape symbols -> ours
        self.nodes: list[Node] = []
        self.types: dict[str, TensorType] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.env: dict[str, Any] = {}  # fx node name -> IR name | list | sympy expr | None
        self.current: torch.fx.Node | None = None
        self._uid = 0

    # ---- names and values ---------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        self._uid += 1
        return f"{hint}_{self._uid}"

    def const(self, array: np.ndarray, hint: str = "c") -> str:
        name = self.fresh(hint)
        arr = np.array(array, order="C", copy=True)
        self.consts[name] = arr
        self.types[name] = TensorType(_np_ir(arr.dtype), tuple(int(s) for s in arr.shape))
        return name

    def value(self, arg: Any) -> str:
        """The IR name of a tensor argument."""
        if isinstance(arg, torch.fx.Node):
            v = self.env.get(arg.name)
            if isinstance(v, str):
                return v
            raise GraphError(f"argument {arg.name} is not a tensor here (got {type(v).__name__})")
        raise GraphError(f"expected a tensor argument, got {arg!r}")

    def is_tensor(self, arg: Any) -> bool:
        return isinstance(arg, torch.fx.Node) and isinstance(self.env.get(arg.name), str)

    def dim(self, arg: Any) -> Dim:
        """An int, SymInt or fx node carrying a SymInt -> int or sympy expression."""
        if isinstance(arg, torch.fx.Node):
            v = self.env.get(arg.name)
            if isinstance(v, (int, sympy.Expr)):
                return dim(v)
            arg = arg.meta.get("val")
        if isinstance(arg, torch.SymInt):
            return self.sym_expr(arg.node.expr)
        if isinstance(arg, (int, np.integer)):
            return int(arg)
        raise GraphError(f"expected an integer or symbolic size, got {arg!r}")

    def sym_expr(self, expr: Any) -> Dim:
        from torch.utils._sympy.functions import FloorDiv

        expr = sympy.sympify(expr).replace(FloorDiv, lambda a, b: sympy.floor(a / b))
        return dim(expr.xreplace(self.symbol_map))

    def shape_of(self, fx: torch.fx.Node) -> tuple[Dim, ...]:
        return tuple(self.dim(s) for s in fx.meta["val"].shape)

    def type_of(self, name: str) -> TensorType:
        return self.types[name]

    # ---- emitting -------------------------------------------------------------------------
    def emit(self, op: str, inputs: list[str], attrs: dict | None = None, n_out: int = 1) -> str | list[str]:
        node = Node(
            op, tuple(inputs), (), dict(attrs or {}), source_line(self.current) if self.current else ""
        )
        out_types = infer(node, [self.types[i] for i in inputs if i])
        outs = tuple(self.fresh(op) for _ in out_types)
        for o, t in zip(outs, out_types, strict=True):
            self.types[o] = t
        self.nodes.append(Node(op, node.inputs, outs, node.attrs, node.source))
        return outs[0] if n_out == 1 else list(outs)

    def cast(self, name: str, dtype: str) -> str:
        return name if self.types[name].dtype == dtype else self.emit("cast", [name], {"dtype": dtype})

    def operand(self, arg: Any, dtype: str) -> str:
        """A tensor or Python scalar as an IR value of `dtype`."""
        if self.is_tensor(arg):
            return self.cast(self.value(arg), dtype)
        if isinstance(arg, torch.fx.Node):  # a SymInt used as a scalar operand
            d = self.dim(arg)
            if isinstance(d, int):
                arg = d
            else:
                return self.emit("full", [], {"shape": (), "value": d, "dtype": dtype})
        if isinstance(arg, (bool, int, float)):
            return self.const(np.array(arg, dtype=DTYPES[dtype]), "s")
        raise GraphError(f"unsupported operand {arg!r}")

    def scalar_dtype(self, arg: Any) -> str:
        if self.is_tensor(arg):
            return self.types[self.value(arg)].dtype
        if isinstance(arg, bool):
            return "bool"
        if isinstance(arg, (int, torch.fx.Node)):
            return "i64"
        return "f32"

    def common_dtype(self, *args: Any) -> str:
        """torch's type promotion: 0-d scalars only lift the category (bool < int < float)."""
        tensors = [self.types[self.value(a)].dtype for a in args if self.is_tensor(a)]
        scalars = [self.scalar_dtype(a) for a in args if not self.is_tensor(a)]
        base = promote(*tensors) if tensors else promote(*scalars)
        cat = {"bool": 0, "u8": 1, "i8": 1, "i32": 1, "i64": 1, "f32": 2}
        for s in scalars:
            if cat[s] > cat[base]:
                base = s
        return base

    def out_dtype(self, fx: torch.fx.Node) -> str:
        val = fx.meta.get("val")
        if isinstance(val, (list, tuple)):
            val = val[0]
        return ir_dtype(val.dtype, f" at {source_line(fx)}")


def _np_ir(dt: np.dtype) -> str:
    for k, v in DTYPES.items():
        if v == dt and k in _RANK:  # not "f16": only passes/quantize.py makes half constants
            return k
    raise UnsupportedOpError(f"constant of dtype {dt} is not supported; supported: {sorted(_RANK)}")
