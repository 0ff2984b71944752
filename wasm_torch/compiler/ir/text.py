"""Readable text form of a graph, and its parser: for debugging, docs and before/after pass tests.

    symbol seq in [1, 512] = ids.shape[1]
    input ids: i64[1, seq]
    const w: f32[2, 3] = [[0.5, 1.0, -2.0], [0.0, 0.25, 3.0]]
    y: f32[1, seq, 3] = matmul_packed(x, w, act='relu', n=3)
    return y

`format_graph(g)` prints small constants' values only when they are scalars (a debugging view);
`format_graph(g, values=True)` prints every constant's value, so `parse_graph` gives back an equal
graph (same inputs, outputs, nodes, types, constants and symbols; a node's `source` is not printed).
Attribute values are Python literals (ints, floats, strings, bools, None, tuples, lists, dicts),
symbolic dimensions in sympy's own syntax (`2*seq`, `floor(seq/2)`), and fused-elementwise steps as
`Step('add', (0, 1), alpha=1.0)`. The parser evaluates nothing: it walks Python's syntax tree and
accepts only those forms.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import numpy as np
import sympy

from ...errors import GraphError
from .graph import DTYPES, Graph, Node, Symbol, TensorType, dim
from .op import Step

# ---- formatting ----------------------------------------------------------------------------------


def _value(v: Any) -> str:
    """An attribute value as text `_parse_value` reads back."""
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, int | str):
        return repr(v)
    if isinstance(v, float):
        return repr(v) if np.isfinite(v) else ("nan" if np.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, sympy.Basic):
        return str(v)
    if isinstance(v, Step):
        extra = "".join(f", {k}={_value(x)}" for k, x in v.attrs.items())
        return f"Step({v.op!r}, {_value(tuple(v.args))}{extra})"
    if isinstance(v, tuple):
        return "(" + ", ".join(_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_value(k)}: {_value(x)}" for k, x in v.items()) + "}"
    raise GraphError(f"attribute value {v!r} of type {type(v).__name__} has no text form")


def _type(t: TensorType) -> str:
    return f"{t.dtype}[{', '.join(str(d) for d in t.shape)}]"


def format_graph(g: Graph, values: bool = False) -> str:
    lines = []
    for s in g.symbols.values():
        lines.append(f"symbol {s.name} in [{s.min}, {s.max}] = {s.input}.shape[{s.axis}]")
    for name in g.inputs:
        lines.append(f"input {name}: {_type(g.types[name])}")
    for name, arr in g.consts.items():
        shown = values or arr.size == 1
        text = _value(arr.tolist() if arr.ndim else arr.item()) if shown else ""
        lines.append(f"const {name}: {_type(g.types[name])}" + (f" = {text}" if shown else ""))
    for n in g.nodes:
        outs = ", ".join(f"{o}: {_type(g.types[o])}" for o in n.outputs)
        args = [i or "_" for i in n.inputs] + [f"{k}={_value(v)}" for k, v in n.attrs.items()]
        lines.append(f"{outs} = {n.op}({', '.join(args)})")
    lines.append(f"return {', '.join(g.outputs)}")
    return "\n".join(lines)


# ---- parsing -------------------------------------------------------------------------------------
_SYMPY_CALLS = {"floor": sympy.floor, "ceiling": sympy.ceiling, "Max": sympy.Max, "Min": sympy.Min, "Mod": sympy.Mod}
_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: sympy.Rational(a, b) if isinstance(a, int) and isinstance(b, int) else a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Pow: lambda a, b: a**b,
    ast.Mod: lambda a, b: a % b,
}
_FLOATS = {"inf": float("inf"), "nan": float("nan")}


def _eval(node: ast.AST, line: str) -> Any:
    """A Python-literal / sympy / Step syntax tree -> value, without eval()."""
    match node:
        case ast.Constant(value=v) if isinstance(v, int | float | str | bool) or v is None:
            return v
        case ast.Name(id=name) if name in _FLOATS:
            return _FLOATS[name]
        case ast.Name(id=name):  # a symbolic dimension
            return sympy.Symbol(name, integer=True, positive=True)
        case ast.UnaryOp(op=ast.USub(), operand=x):
            return -_eval(x, line)
        case ast.BinOp(left=a, op=op, right=b) if type(op) in _BINOPS:
            return _BINOPS[type(op)](_eval(a, line), _eval(b, line))
        case ast.Tuple(elts=xs):
            return tuple(_eval(x, line) for x in xs)
        case ast.List(elts=xs):
            return [_eval(x, line) for x in xs]
        case ast.Dict(keys=ks, values=vs) if all(k is not None for k in ks):
            return {_eval(k, line): _eval(v, line) for k, v in zip(ks, vs, strict=True)}
        case ast.Call(func=ast.Name(id="Step"), args=[op, args], keywords=kws):
            return Step(_eval(op, line), tuple(_eval(args, line)), {k.arg: _eval(k.value, line) for k in kws})
        case ast.Call(func=ast.Name(id=f), args=args, keywords=[]) if f in _SYMPY_CALLS:
            return _SYMPY_CALLS[f](*(_eval(a, line) for a in args))
    raise GraphError(f"cannot read {ast.unparse(node)!r} in graph text line: {line}")


def _expr(text: str, line: str) -> Any:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise GraphError(f"bad syntax {text!r} in graph text line: {line}") from e
    return _eval(tree.body, line)


def _dims(text: str, line: str) -> tuple:
    if not text.strip():
        return ()
    v = _expr(f"({text},)", line)
    return tuple(dim(d) for d in v)


_TYPE = re.compile(r"(\w+): (\w+)\[([^\]]*)\]")


def _parse_type(dtype: str, shape: str, line: str) -> TensorType:
    if dtype not in DTYPES:
        raise GraphError(f"unknown dtype {dtype!r} in graph text line: {line}")
    return TensorType(dtype, _dims(shape, line))


def parse_graph(text: str, consts: dict[str, np.ndarray] | None = None) -> Graph:
    """The graph `format_graph(g, values=True)` printed. Constants printed without a value are
    taken from `consts` (by name)."""
    inputs: list[str] = []
    outputs: tuple[str, ...] | None = None
    nodes: list[Node] = []
    types: dict[str, TensorType] = {}
    values: dict[str, np.ndarray] = {}
    symbols: dict[str, Symbol] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if m := re.fullmatch(r"symbol (\w+) in \[(\d+), (\d+)\] = (\w+)\.shape\[(\d+)\]", line):
            name, lo, hi, inp, axis = m.groups()
            symbols[name] = Symbol(name, int(lo), int(hi), inp, int(axis))
        elif m := re.fullmatch(r"input (\w+): (\w+)\[([^\]]*)\]", line):
            inputs.append(m[1])
            types[m[1]] = _parse_type(m[2], m[3], line)
        elif m := re.fullmatch(r"const (\w+): (\w+)\[([^\]]*)\](?: = (.+))?", line):
            name, t = m[1], _parse_type(m[2], m[3], line)
            types[name] = t
            if m[4] is not None:
                arr = np.asarray(_expr(m[4], line), dtype=DTYPES[t.dtype])
            elif consts is not None and name in consts:
                arr = np.asarray(consts[name])
            else:
                raise GraphError(f"constant {name!r} has no value in the text and none was given: {line}")
            if arr.shape != tuple(t.shape):
                raise GraphError(f"constant {name!r}: value shape {arr.shape} != declared {t}: {line}")
            values[name] = arr.astype(DTYPES[t.dtype], copy=False)
        elif line.startswith("return"):
            outputs = tuple(o.strip() for o in line[len("return") :].split(",") if o.strip())
        elif " = " in line:
            lhs, rhs = line.split(" = ", 1)
            outs = _TYPE.findall(lhs)
            if not outs or ", ".join(f"{o}: {d}[{s}]" for o, d, s in outs) != lhs.strip():
                raise GraphError(f"cannot read the outputs {lhs!r} in graph text line: {line}")
            try:
                call = ast.parse(rhs, mode="eval").body
            except SyntaxError as e:
                raise GraphError(f"bad syntax in graph text line: {line}") from e
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
                raise GraphError(f"expected op(inputs, attr=value, ...) in graph text line: {line}")
            ins = []
            for a in call.args:
                if not isinstance(a, ast.Name):
                    raise GraphError(f"inputs must be value names, got {ast.unparse(a)!r}: {line}")
                ins.append("" if a.id == "_" else a.id)
            attrs = {k.arg: _eval(k.value, line) for k in call.keywords if k.arg is not None}
            for o, d, s in outs:
                types[o] = _parse_type(d, s, line)
            nodes.append(Node(call.func.id, tuple(ins), tuple(o for o, _, _ in outs), attrs))
        else:
            raise GraphError(f"cannot read graph text line: {line}")
    if outputs is None:
        raise GraphError("graph text has no `return` line")
    return Graph(tuple(inputs), outputs, tuple(nodes), types, values, symbols)


__all__ = ["format_graph", "parse_graph"]
