"""Elementwise loop nests: one elementwise op, or a `fused_elementwise` program (passes/fuse_elementwise.py).

Each step of the program becomes one C local, composed from its op's `c_expr` facet (the op
registry; elementwise ops are in ops/elementwise.py), so
intermediates stay in registers and the output is written once:

    for (...) { float t0 = (float)(wt_powf(v_x[i], 3.0f)); float t1 = (float)((t0 * 0.044715f)); ...
                v_y[i] = t7; }

When every value of the program is float32 and every op has an f32x4 form (`vector` facet), the innermost
loop runs four elements at a time on f32x4 (wasm_simd128.h, the math of kernels/wt_vmath.h):
contiguous operands are loaded, operands broadcast along it are splatted, scalars are constants.
Leftover elements: when the length is a known multiple of 4 there are none; when it is a known
constant >= 4 the last vector overlaps the one before (it recomputes a few elements with the same
result: the memory plan never lets an op's output share bytes with its inputs); otherwise a scalar
loop with the scalar twins of the vector math, which round identically. Why SIMD in the generated
code rather than a vectorising pragma or an -O3 unit: docs/compiler.md, "Vector math and fusion".
Large loops are cut along their outermost loop into chunks run by wt_parallel_for (codegen/parallel.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy

from ..ir.graph import Dim, Node, numel
from ..ir.op import Step, op_def, program_types, vector_template
from .ctable import CTYPE
from .dims import c_dim
from .loops import broadcast_strides, contiguous_strides
from .parallel import worth_parallel

if TYPE_CHECKING:
    from .emit import Emitter


def program_of(n: Node) -> tuple[Step, ...]:
    if n.op == "fused_elementwise":
        return n.attrs["program"]
    return (Step(n.op, tuple(range(len(n.inputs))), n.attrs),)


def _multiple_of_4(d: Dim) -> bool:
    if isinstance(d, int):
        return d % 4 == 0
    try:
        return all(c.is_Integer and int(c) % 4 == 0 for c in sympy.Poly(d).coeffs())
    except (sympy.PolynomialError, TypeError, ValueError):
        return False


class ElementwiseLoop:
    def __init__(self, em: Emitter, n: Node, strides: list[list[Dim]]):
        self.em, self.n, self.strides = em, n, strides
        self.program = program_of(n)
        self.in_types = [em.t(i) for i in n.inputs]
        self.types = program_types(self.program, self.in_types)
        self.k = len(n.inputs)

    # ---- scalar: ctable templates, one C local per step -----------------------------------------
    def scalar_body(self, offs: list[str]) -> None:
        em, n = self.em, self.n
        vals = [em.at(i, o) for i, o in zip(n.inputs, offs[1:], strict=True)]
        dtypes = [t.dtype for t in self.in_types]
        lines = []
        for j, s in enumerate(self.program):
            args = [vals[a] for a in s.args]
            in_dtype = dtypes[s.args[1 if s.op == "where" else 0]]
            ct = CTYPE[self.types[j].dtype]
            c_expr = op_def(s.op).c_expr
            assert c_expr is not None, s.op  # every elementwise op has one (tests/compiler/ops/test_registry.py)
            value = f"({ct}){c_expr(in_dtype, self.types[j].dtype, s.attrs).format(*args)}"
            if j == len(self.program) - 1:
                lines.append(f"{em.var(n.outputs[0])}[{offs[0]}] = {value};")
            else:
                lines.append(f"{ct} t{j} = {value};")
                vals.append(f"t{j}")
                dtypes.append(self.types[j].dtype)
        self._block(lines)

    def _block(self, lines: list[str]) -> None:
        w = self.em.w
        if len(lines) == 1:
            w.line(lines[0])
            return
        w.line("{")
        w.depth += 1
        for line in lines:
            w.line(line)
        w.depth -= 1
        w.line("}")

    # ---- SIMD: f32x4 innermost loop ------------------------------------------------------------
    def vector_templates(self) -> list[str] | None:
        """The f32x4 template of every step, or None when the program cannot run on f32x4."""
        if any(t.dtype != "f32" for t in [*self.in_types, *self.types]):
            return None
        out = []
        for s in self.program:
            template = vector_template(s.op, s.attrs, [self._scalar_arg(a) for a in s.args])
            if template is None:
                return None
            out.append(template)
        return out

    def _scalar_arg(self, a: int) -> float | None:
        """The value of program argument `a` when it is a one-element constant input, else None."""
        if a >= self.k:
            return None
        b = self.em.g.consts.get(self.n.inputs[a])
        return float(b.item()) if b is not None and b.size == 1 else None

    def vector_body(self, offs: list[str], inner: list[Dim], j: str, templates: list[str]) -> None:
        em, n = self.em, self.n
        vals = []
        for v, o, s in zip(n.inputs, offs[1:], inner[1:], strict=True):
            lit = em.scalar_literal(v)
            if lit is not None:
                vals.append(f"wasm_f32x4_splat({lit})")
            elif s == 0:
                vals.append(f"wasm_f32x4_splat({em.var(v)}[{o}])")
            else:
                vals.append(f"wasm_v128_load(&{em.var(v)}[{_plus(o, j)}])")
        lines = []
        for step, (s, tmpl) in enumerate(zip(self.program, templates, strict=True)):
            lines.append(f"v128_t t{step} = {tmpl.format(*[vals[a] for a in s.args])};")
            vals.append(f"t{step}")
        lines.append(f"wasm_v128_store(&{em.var(n.outputs[0])}[{_plus(offs[0], j)}], t{len(templates) - 1});")
        self._block(lines)

    def emit(self) -> None:
        em, n = self.em, self.n
        shape = em.t(n.outputs[0]).shape
        mode = em.options.elementwise
        templates = self.vector_templates() if mode == "simd" else None
        merged = em.merged(shape, self.strides)
        last = merged[-1] if merged else None
        if (
            templates is None
            or last is None
            or any(s not in (0, 1) for s in last[1])
            or (isinstance(last[0], int) and last[0] < 4)
        ):
            templates = None
        steps = max(1, len(self.program))
        if merged and worth_parallel(numel(list(shape)) * steps):
            # cut the outermost loop (a 1-D loop in multiples of 4, so every chunk but the last is whole vectors)
            unit = numel([d for d, _ in merged[1:]]) * steps
            em.tasks.parallel_for(
                [*n.inputs, *n.outputs],
                merged[0][0],
                unit,
                lambda lo, hi: self._loops(shape, merged, templates, (lo, hi)),
                align=4 if len(merged) == 1 else 1,
            )
            return
        self._loops(shape, merged, templates, None)

    def _loops(
        self, shape: tuple[Dim, ...], merged: list, templates: list[str] | None, rng: tuple[str, str] | None
    ) -> None:
        """The loop nest; rng: C bounds of the outermost merged loop (one chunk of a parallel loop)."""
        em = self.em
        bases = ["0"] * len(self.strides)
        if templates is None:
            pragma = "#pragma clang loop vectorize(enable)" if em.options.elementwise == "pragma" else ""
            em.loops(shape, self.strides, bases, self.scalar_body, inner_pragma=pragma, first=rng)
            return
        n_inner, inner = merged[-1]
        outer_shape = tuple(d for d, _ in merged[:-1])
        outer_strides = [[ss[k] for _, ss in merged[:-1]] for k in range(len(self.strides))]
        cut_inner = rng is not None and not outer_shape

        def inner_loop(offs: list[str]) -> None:
            w = em.w
            j, size = em.new_index(), c_dim(n_inner)
            if cut_inner:  # one chunk of a 1-D loop: whole vectors, then a scalar tail (last chunk only)
                assert rng is not None
                w.line(f"int {j} = {rng[0]};")
                w.line(f"for (; {j} + 4 <= {rng[1]}; {j} += 4) {{")
                w.depth += 1
            elif _multiple_of_4(n_inner):
                w.line(f"for (int {j} = 0; {j} < {size}; {j} += 4) {{")
                w.depth += 1
            elif isinstance(n_inner, int):  # the last vector overlaps the previous one
                w.line(f"for (int {j} = 0; {j} < {size}; {j} += 4) {{")
                w.depth += 1
                w.line(f"if ({j} > {n_inner - 4}) {j} = {n_inner - 4};")
            else:  # unknown length: a scalar tail after the vectors
                w.line(f"int {j} = 0;")
                w.line(f"for (; {j} + 4 <= {size}; {j} += 4) {{")
                w.depth += 1
            self.vector_body(offs, inner, j, templates)
            w.depth -= 1
            w.line("}")
            if cut_inner or (not isinstance(n_inner, int) and not _multiple_of_4(n_inner)):
                end = rng[1] if cut_inner and rng is not None else size
                w.line(f"for (; {j} < {end}; {j}++) {{")
                w.depth += 1
                self.scalar_body([_plus(o, j) if s != 0 else o for o, s in zip(offs, inner, strict=True)])
                w.depth -= 1
                w.line("}")

        em.w.line("{")
        em.w.depth += 1
        em.loops(outer_shape, outer_strides, bases, inner_loop, first=rng)
        em.w.depth -= 1
        em.w.line("}")


def _plus(off: str, j: str) -> str:
    return j if off == "0" else f"{off} + {j}"


def emit_elementwise(em: Emitter, n: Node) -> None:
    """The C emitter of every elementwise op and of `fused_elementwise`."""
    ot = em.t(n.outputs[0])
    strides = [contiguous_strides(ot.shape)] + [broadcast_strides(em.t(i).shape, ot.shape) for i in n.inputs]
    ElementwiseLoop(em, n, strides).emit()
