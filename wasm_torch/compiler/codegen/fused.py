"""Elementwise loop nests: one elementwise op, or a `fused_elementwise` program (passes/fuse_elementwise.py).

Each step of the program becomes one C local, composed from the op -> C table (`ctable.py`), so
intermediates stay in registers and the output is written once:

    for (...) { float t0 = (float)(wt_powf(v_x[i], 3.0f)); float t1 = (float)((t0 * 0.044715f)); ...
                v_y[i] = t7; }

When every value of the program is float32 and every op has a SIMD form (`VECTOR`), the innermost
loop runs four elements at a time on f32x4 (wasm_simd128.h, the math of kernels/wt_vmath.h):
contiguous operands are loaded, operands broadcast along it are splatted, scalars are constants.
Leftover elements: when the length is a known multiple of 4 there are none; when it is a known
constant >= 4 the last vector overlaps the one before (it recomputes a few elements with the same
result: the memory plan never lets an op's output share bytes with its inputs); otherwise a scalar
loop with the scalar twins of the vector math, which round identically. Why SIMD in the generated
code rather than a vectorising pragma or an -O3 unit: docs/compiler.md, "Vector math and fusion".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy

from ..ir.graph import Dim, Node
from ..ir.ops import Step, program_types
from .ctable import CTYPE, expr, literal
from .dims import c_dim

if TYPE_CHECKING:
    from .emit import Emitter

# How the innermost loop of an all-f32 program is emitted: "simd" (explicit f32x4, the choice),
# "pragma" (scalar C with `#pragma clang loop vectorize(enable)`) or "scalar". Only bench/fusion.py
# changes it, to measure the alternatives.
MODE = "simd"

VECTOR = {
    "add": "WT_VADD({0}, {1})",
    "sub": "WT_VSUB({0}, {1})",
    "mul": "WT_VMUL({0}, {1})",
    "div": "WT_VDIV({0}, {1})",
    "neg": "wasm_f32x4_neg({0})",
    "abs": "wasm_f32x4_abs({0})",
    "copy": "{0}",
    # pmax(a, b) = a < b ? b : a: the same choices (and NaN handling) as the scalar WT_MAX / WT_MIN
    "relu": "wasm_f32x4_pmax(WT_F4(0.0f), {0})",
    "maximum": "wasm_f32x4_pmax({1}, {0})",
    "minimum": "wasm_f32x4_pmin({1}, {0})",
    "sqrt": "wasm_f32x4_sqrt({0})",
    "rsqrt": "WT_VDIV(WT_F4(1.0f), wasm_f32x4_sqrt({0}))",
    "reciprocal": "WT_VDIV(WT_F4(1.0f), {0})",
    "floor": "wasm_f32x4_floor({0})",
    "ceil": "wasm_f32x4_ceil({0})",
    "exp": "wt_v_expf({0})",
    "tanh": "wt_v_tanhf({0})",
    "sigmoid": "wt_v_sigmoidf({0})",
    "silu": "wt_v_siluf({0})",
    "gelu": "wt_v_geluf({0})",
    "gelu_tanh": "wt_v_gelu_tanhf({0})",
    "erf": "wt_v_erff({0})",
    "hardsigmoid": "wasm_f32x4_pmin(WT_F4(1.0f), wasm_f32x4_pmax(WT_F4(0.0f), "
    "WT_VADD(WT_VMUL({0}, WT_F4(1.0f / 6.0f)), WT_F4(0.5f))))",
    "hardswish": "WT_VMUL({0}, wasm_f32x4_pmin(WT_F4(1.0f), wasm_f32x4_pmax(WT_F4(0.0f), "
    "WT_VADD(WT_VMUL({0}, WT_F4(1.0f / 6.0f)), WT_F4(0.5f)))))",
}
# pow with a constant exponent: the cases wt_powf special-cases, so vector and scalar agree
VECTOR_POW = {2.0: "WT_VMUL({0}, {0})", 3.0: "WT_VMUL(WT_VMUL({0}, {0}), {0})", 0.5: "wasm_f32x4_sqrt({0})"}


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
            value = f"({ct}){expr(s.op, in_dtype, self.types[j].dtype, s.attrs).format(*args)}"
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
            if s.op == "pow":
                b = self.em.g.consts.get(self.n.inputs[s.args[1]]) if s.args[1] < self.k else None
                value = float(b.item()) if b is not None and b.size == 1 else None
                if value not in VECTOR_POW:
                    return None
                out.append(VECTOR_POW[value])
            elif s.op == "clamp":
                e = "{0}"
                if s.attrs.get("min") is not None:
                    e = f"wasm_f32x4_pmax(wasm_f32x4_splat({literal(s.attrs['min'], 'f32')}), {e})"
                if s.attrs.get("max") is not None:
                    e = f"wasm_f32x4_pmin(wasm_f32x4_splat({literal(s.attrs['max'], 'f32')}), {e})"
                out.append(e)
            elif s.op == "leaky_relu":
                slope = literal(s.attrs["slope"], "f32")
                out.append(
                    f"wasm_v128_bitselect({{0}}, WT_VMUL({{0}}, WT_F4({slope})), "
                    "wasm_f32x4_ge({0}, WT_F4(0.0f)))"
                )
            elif s.op in VECTOR:
                out.append(VECTOR[s.op])
            else:
                return None
        return out

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
        em = self.em
        shape = em.t(self.n.outputs[0]).shape
        bases = ["0"] * len(self.strides)
        templates = self.vector_templates() if MODE == "simd" else None
        merged = em.merged(shape, self.strides)
        last = merged[-1] if merged else None
        if (
            templates is None
            or last is None
            or any(s not in (0, 1) for s in last[1])
            or (isinstance(last[0], int) and last[0] < 4)
        ):
            pragma = "#pragma clang loop vectorize(enable)" if MODE == "pragma" else ""
            em.loops(shape, self.strides, bases, self.scalar_body, inner_pragma=pragma)
            return
        n_inner, inner = last
        outer_shape = tuple(d for d, _ in merged[:-1])
        outer_strides = [[ss[k] for _, ss in merged[:-1]] for k in range(len(self.strides))]

        def inner_loop(offs: list[str]) -> None:
            w = em.w
            em._loop += 1
            j, size = f"i{em._loop}", c_dim(n_inner)
            if _multiple_of_4(n_inner):
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
            if not isinstance(n_inner, int) and not _multiple_of_4(n_inner):
                w.line(f"for (; {j} < {size}; {j}++) {{")
                w.depth += 1
                self.scalar_body([_plus(o, j) if s != 0 else o for o, s in zip(offs, inner, strict=True)])
                w.depth -= 1
                w.line("}")

        em.w.line("{")
        em.w.depth += 1
        em.loops(outer_shape, outer_strides, bases, inner_loop)
        em.w.depth -= 1
        em.w.line("}")


def _plus(off: str, j: str) -> str:
    return j if off == "0" else f"{off} + {j}"


def emit_elementwise(em: Emitter, n: Node, strides: list[list[Dim]]) -> None:
    ElementwiseLoop(em, n, strides).emit()
