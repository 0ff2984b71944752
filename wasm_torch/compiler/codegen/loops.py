"""Strided loop nests over symbolic shapes: the one piece of C every data-movement op shares.

`Loops` holds the graph, the memory plan and the C writer; `loops()` opens one `for` per dimension
(size-1 dimensions dropped, adjacent dimensions merged when every operand is contiguous across
both) and hands the body one offset expression per operand.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from ..ir.graph import Dim, Graph, TensorType, dims_equal
from .ctable import literal
from .dims import c_dim
from .memory_plan import MemoryPlan
from .writer import CWriter


def contiguous_strides(shape: tuple[Dim, ...]) -> list[Dim]:
    strides: list[Dim] = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    return [sympy.expand(s) if isinstance(s, sympy.Expr) else s for s in strides]


def broadcast_strides(shape: tuple[Dim, ...], out: tuple[Dim, ...]) -> list[Dim]:
    cs = contiguous_strides(shape)
    lead = len(out) - len(shape)
    return [0] * lead + [0 if (d == 1 and out[lead + j] != 1) else cs[j] for j, d in enumerate(shape)]


class Loops:
    def __init__(self, g: Graph, plan: MemoryPlan):
        self.g, self.plan, self.w = g, plan, CWriter()
        self._loop = 0

    # ---- values ---------------------------------------------------------------------------------
    def var(self, v: str) -> str:
        return "v_" + v

    def opt(self, v: str) -> str:
        """An optional operand: its pointer, or 0 when the node has none ("")."""
        return self.var(v) if v else "0"

    def t(self, v: str) -> TensorType:
        return self.g.types[v]

    def scalar_literal(self, v: str) -> str | None:
        arr = self.g.consts.get(v)
        return literal(arr.reshape(()).item(), self.t(v).dtype) if arr is not None and arr.size == 1 else None

    def at(self, v: str, off: str) -> str:
        lit = self.scalar_literal(v)
        return lit if lit is not None else f"{self.var(v)}[{off}]"

    # ---- loops ----------------------------------------------------------------------------------
    def new_index(self) -> str:
        self._loop += 1
        return f"i{self._loop}"

    def loops(
        self,
        shape: tuple[Dim, ...],
        strides: list[list[Dim]],
        bases: list[str],
        body: Callable[[list[str]], None],
        inner_pragma: str = "",
        first: tuple[str, str] | None = None,
    ) -> None:
        """Nested loops over `shape`; body gets one C offset expression per operand. `first`: C bounds
        [lo, hi) for the outermost loop (a chunk of a parallel loop) instead of [0, size)."""
        merged = self.merged(shape, strides)
        idx = []
        for d, _ in merged:
            i = self.new_index()
            lo, hi = first if first is not None and not idx else ("0", c_dim(d))
            idx.append(i)
            if inner_pragma and len(idx) == len(merged):
                self.w.line(inner_pragma)
            self.w.line(f"for (int {i} = {lo}; {i} < {hi}; {i}++) {{")
            self.w.depth += 1
        offs = []
        for k, base in enumerate(bases):
            terms = [base] if base != "0" else []
            for i, (_, ss) in zip(idx, merged, strict=True):
                s = ss[k]
                if s == 0:
                    continue
                terms.append(i if s == 1 else f"{i} * {c_dim(s)}")
            offs.append(" + ".join(terms) or "0")
        body(offs)
        for _ in merged:
            self.w.depth -= 1
            self.w.line("}")

    def merged(self, shape: tuple[Dim, ...], strides: list[list[Dim]]) -> list[tuple[Dim, list[Dim]]]:
        """The loop dims of `shape` (size-1 dims dropped) with each operand's stride, adjacent dims
        merged into one when every operand is contiguous across both."""
        dims = [(d, [s[i] for s in strides]) for i, d in enumerate(shape) if d != 1]
        merged: list[tuple[Dim, list[Dim]]] = []
        for d, ss in dims:
            if merged and all(dims_equal(ps, s * d) for ps, s in zip(merged[-1][1], ss, strict=True)):
                pd, _ = merged[-1]
                merged[-1] = (pd * d, ss)
            else:
                merged.append((d, ss))
        return merged

    def copy_loop(
        self,
        shape: tuple[Dim, ...],
        out: str,
        out_strides: list[Dim],
        out_base: str,
        src: str,
        src_strides: list[Dim],
        src_base: str,
    ) -> None:
        self.loops(
            shape,
            [out_strides, src_strides],
            [out_base, src_base],
            lambda o: self.w.line(f"{self.var(out)}[{o[0]}] = {self.at(src, o[1])};"),
        )
