"""The op registry: every IR op's facets in one record, and the shape helpers the rules share.

    OpDef(name, group, infer, interp, emit, flops[, c_expr, vector])

- `infer`: what comes out (dtype and shape) — the verifier checks every node with it;
- `interp`: what it means — the NumPy reference interpreter (`interp.py`) calls it, and passes must
  not change its results;
- `emit`: the C it becomes (codegen calls it with the `Emitter`); None only for aliases (reshape),
  which need no code because the output shares the input's storage;
- `flops`: how much work one node is, symbolic over the graph's dynamic dimensions (the manifest's
  work units and the partitioner's balance come from it);
- elementwise ops also carry `c_expr` (the scalar C template, composed by `codegen/fused.py`) and,
  when they have one, `vector` (the f32x4 template);
- `inplace`: outputs written into an input's own storage (the KV cache of `kv_attention`).

The records live with the op families in `wasm_torch/compiler/ops/` (one file per family: its shape
rules, NumPy meaning and C side together); importing `wasm_torch.compiler` registers them all, and
`tests/compiler/ops/test_registry.py` checks that none lacks a facet. Adding an op = one record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import sympy

from ...errors import GraphError
from .graph import Dim, Node, Shape, TensorType, dim

Group = Literal["elementwise", "fused", "reduce", "movement", "alias", "index", "kernel", "create"]
Bindings = dict[sympy.Symbol, int]
InferFn = Callable[[Node, list[TensorType]], list[TensorType]]
InterpFn = Callable[[Node, list[Any], Bindings, list[tuple[int, ...]]], list[np.ndarray]]
EmitFn = Callable[[Any, Node], None]  # (codegen.emit.Emitter, node); Any keeps ir below codegen
FlopsFn = Callable[[Node, list[TensorType], list[TensorType]], Dim]
CExprFn = Callable[[str, str, dict[str, Any]], str]  # (input dtype, output dtype, attrs) -> C template
VectorFn = Callable[[dict[str, Any], list[float | None]], str | None]  # (attrs, scalar args) -> f32x4


@dataclass(frozen=True)
class OpDef:
    name: str
    group: Group
    infer: InferFn
    interp: InterpFn
    emit: EmitFn | None
    flops: FlopsFn
    c_expr: CExprFn | None = None
    vector: VectorFn | None = None
    doc: str = field(default="", compare=False)
    # Outputs that update an input in place, as (output index, input index) pairs: the output is
    # that input's storage after the node wrote into it (a KV cache). The memory plan gives both
    # one buffer; the input must have no reader after the node (codegen/memory_plan.py checks).
    inplace: tuple[tuple[int, int], ...] = ()


OPS: dict[str, OpDef] = {}


def register(*defs: OpDef) -> None:
    for d in defs:
        if d.name in OPS:
            raise GraphError(f"IR op {d.name!r} registered twice")
        if d.emit is None and d.group != "alias":
            raise GraphError(f"IR op {d.name!r}: only aliases may have no C emitter")
        OPS[d.name] = d


def op_def(name: str) -> OpDef:
    d = OPS.get(name)
    if d is None:
        raise GraphError(f"unknown IR op {name!r} (registered: {len(OPS)} ops; is wasm_torch.compiler imported?)")
    return d


def vector_template(op: str, attrs: dict[str, Any], scalars: list[float | None]) -> str | None:
    """The op's f32x4 form for these attrs and one-element constant args, or None when it has none
    (code generation then runs the whole fused group scalar; fuse_elementwise groups by this)."""
    vector = op_def(op).vector
    return vector(attrs, scalars) if vector is not None else None


def in_group(op: str, group: Group) -> bool:
    d = OPS.get(op)
    return d is not None and d.group == group


def all_ops() -> tuple[str, ...]:
    return tuple(sorted(OPS))


def infer(node: Node, in_types: list[TensorType]) -> list[TensorType]:
    return op_def(node.op).infer(node, in_types)


# ---- helpers the shape rules share ---------------------------------------------------------------
def broadcast(*shapes: Shape) -> Shape:
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0]
        non1 = [d for d in dims if not (isinstance(d, int) and d == 1)]
        if not non1:
            out.append(1)
            continue
        ints = {d for d in non1 if isinstance(d, int)}
        if len(ints) > 1:
            raise GraphError(f"cannot broadcast shapes {shapes}")
        out.append(next(iter(ints)) if ints else non1[0])
    return tuple(out)


def norm_axis(axis: int, rank: int) -> int:
    if not -max(rank, 1) <= axis < max(rank, 1):
        raise GraphError(f"axis {axis} out of range for rank {rank}")
    return axis % max(rank, 1)


def pool_out(size: Dim, k: int, s: int, p: int, d: int, ceil_mode: bool) -> Dim:
    span = size + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        o = (
            sympy.ceiling(sympy.Rational(1, s) * span) + 1
            if isinstance(span, sympy.Expr)
            else -(-span // s) + 1
        )
        # PyTorch: the last window must start inside the input (or left padding)
        if isinstance(o, int) and (o - 1) * s >= size + p:
            o -= 1
        return dim(o)
    return dim(span // s + 1) if isinstance(span, int) else dim(sympy.floor(span / s) + 1)


def same(n: Node, t: list[TensorType]) -> list[TensorType]:
    """Shape rule of ops whose output is typed like their first input."""
    return [t[0]]


@dataclass(frozen=True)
class Step:
    """One op of a `fused_elementwise` program (passes/fuse_elementwise.py). `args` index the node's
    inputs first, then the results of earlier steps: with k inputs, arg k + j is step j's result."""

    op: str
    args: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.attrs.items())
        return f"{self.op}({', '.join(f'%{a}' for a in self.args)}{extra})"


def program_types(program: tuple[Step, ...], inputs: list[TensorType]) -> list[TensorType]:
    """The type of every step of a fused program (each by its own op's rule); the last is the output."""
    env = list(inputs)
    for s in program:
        if not in_group(s.op, "elementwise") or not all(0 <= a < len(env) for a in s.args):
            raise GraphError(f"fused_elementwise step {s!r} is not an elementwise op over earlier values")
        env.append(op_def(s.op).infer(Node(s.op, (), (), s.attrs), [env[a] for a in s.args])[0])
    return env[len(inputs) :]
