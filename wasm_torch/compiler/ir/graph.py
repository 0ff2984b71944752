"""The IR: typed values, nodes and a graph. Small on purpose.

A `Graph` is a list of `Node`s in topological order. Every value (graph input, constant or node
output) has a name and a `TensorType` (dtype + shape). Shapes hold ints or sympy expressions over
the graph's symbols (dynamic dimensions such as batch or sequence length). Constants (weights)
are numpy arrays. Passes never mutate a graph: they build a new one (`Graph.replace`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from ...errors import GraphError

# IR dtype name -> numpy dtype. `bool` is stored as one byte per element.
DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype(np.float32),
    "i64": np.dtype(np.int64),
    "i32": np.dtype(np.int32),
    "u8": np.dtype(np.uint8),
    "i8": np.dtype(np.int8),
    "bool": np.dtype(np.bool_),
    "f16": np.dtype(np.float16),  # reduced-precision weights only (passes/quantize.py): storage, never computed on
}
NUMPY_TO_IR = {v: k for k, v in DTYPES.items()}

Dim = int | sympy.Expr
Shape = tuple[Dim, ...]


def ir_dtype(np_dtype: Any) -> str:
    dt = np.dtype(np_dtype)
    if dt not in NUMPY_TO_IR:
        raise GraphError(f"dtype {dt} has no IR equivalent (supported: {sorted(DTYPES)})")
    return NUMPY_TO_IR[dt]


def dim(d: Any) -> Dim:
    """Normalise a dimension: plain int when it is a constant, else a sympy expression."""
    if isinstance(d, sympy.Expr):
        d = sympy.simplify(d) if not d.is_Symbol else d
        return int(d) if d.is_Integer else d
    return int(d)


def dims_equal(a: Dim, b: Dim) -> bool:
    """Whether two dimensions are the same for every binding of the symbols (e.g. 2*s == s + s)."""
    return a == b or sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def numel(shape: Shape) -> Dim:
    n: Dim = 1
    for d in shape:
        n = n * d
    return dim(n) if isinstance(n, sympy.Expr) else n


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: Shape

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise GraphError(f"unknown dtype {self.dtype!r}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    source: str = ""  # the user's source line this node came from ("file:line code"), for errors

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class Symbol:
    """A dynamic dimension: name, inclusive bounds, and where to read it from the inputs."""

    name: str
    min: int
    max: int
    input: str  # input name whose shape carries it
    axis: int


@dataclass(frozen=True)
class Graph:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    types: dict[str, TensorType]
    consts: dict[str, np.ndarray]
    symbols: dict[str, Symbol] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Graph:
        return dataclasses.replace(self, **changes)

    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs}

    def users(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def max_bindings(self) -> dict[sympy.Symbol, int]:
        """Each symbol bound to its maximum: the sizes the static memory plan must fit."""
        return {sympy.Symbol(s.name, integer=True, positive=True): s.max for s in self.symbols.values()}

    def sym(self, name: str) -> sympy.Symbol:
        return sympy.Symbol(name, integer=True, positive=True)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))


def evaluate_dim(d: Dim, bindings: dict[sympy.Symbol, int]) -> int:
    if isinstance(d, int):
        return d
    v = d.subs(bindings)
    if not v.is_number:
        raise GraphError(f"dimension {d} has unbound symbols {sorted(map(str, v.free_symbols))}")
    return int(v)


def evaluate_shape(shape: Shape, bindings: dict[sympy.Symbol, int]) -> tuple[int, ...]:
    return tuple(evaluate_dim(d, bindings) for d in shape)
