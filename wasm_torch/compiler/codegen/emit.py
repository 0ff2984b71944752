"""IR graph + memory plan -> one C function, `wt_run(W, A, symbols...)`.

Every non-alias value is a contiguous buffer in the arena (A) or the weights region (W) at the
offsets of the memory plan. Elementwise and data-movement ops are rendered as strided loop nests
(from `ctable.py`); heavy ops call hand-written kernels from `kernels/`. Dimensions may be symbolic:
they are printed as C expressions over the symbol arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import sympy

from ...errors import UnsupportedOpError
from ..ir.graph import Dim, Graph, Node, TensorType, numel
from ..ir.ops import ALIAS, CONV_ACTS, ELEMENTWISE, GEMM_ACTS, REDUCE
from ..passes.memory_plan import MemoryPlan
from .ctable import CTYPE, literal
from .dims import c_dim
from .fused import emit_elementwise
from .writer import CWriter

ENTRY = "wt_run"


def contiguous_strides(shape: tuple[Dim, ...]) -> list[Dim]:
    strides: list[Dim] = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    return [sympy.expand(s) if isinstance(s, sympy.Expr) else s for s in strides]


def broadcast_strides(shape: tuple[Dim, ...], out: tuple[Dim, ...]) -> list[Dim]:
    cs = contiguous_strides(shape)
    lead = len(out) - len(shape)
    return [0] * lead + [0 if (d == 1 and out[lead + j] != 1) else cs[j] for j, d in enumerate(shape)]


def _eq(a: Dim, b: Dim) -> bool:
    return a == b or sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


class Emitter:
    def __init__(self, g: Graph, plan: MemoryPlan):
        self.g, self.plan, self.w = g, plan, CWriter()
        self._loop = 0

    # ---- values ---------------------------------------------------------------------------------
    def var(self, v: str) -> str:
        return "v_" + v

    def t(self, v: str) -> TensorType:
        return self.g.types[v]

    def scalar_literal(self, v: str) -> str | None:
        arr = self.g.consts.get(v)
        return literal(arr.reshape(()).item(), self.t(v).dtype) if arr is not None and arr.size == 1 else None

    def at(self, v: str, off: str) -> str:
        lit = self.scalar_literal(v)
        return lit if lit is not None else f"{self.var(v)}[{off}]"

    # ---- loops ----------------------------------------------------------------------------------
    def loops(
        self,
        shape: tuple[Dim, ...],
        strides: list[list[Dim]],
        bases: list[str],
        body: Callable[[list[str]], None],
        inner_pragma: str = "",
    ) -> None:
        """Nested loops over `shape`; body gets one C offset expression per operand."""
        merged = self.merged(shape, strides)
        idx = []
        opened = 0
        for d, _ in merged:
            self._loop += 1
            i = f"i{self._loop}"
            idx.append(i)
            if inner_pragma and len(idx) == len(merged):
                self.w.line(inner_pragma)
            self.w.line(f"for (int {i} = 0; {i} < {c_dim(d)}; {i}++) {{")
            self.w.depth += 1
            opened += 1
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
        for _ in range(opened):
            self.w.depth -= 1
            self.w.line("}")

    def merged(self, shape: tuple[Dim, ...], strides: list[list[Dim]]) -> list[tuple[Dim, list[Dim]]]:
        """The loop dims of `shape` (size-1 dims dropped) with each operand's stride, adjacent dims
        merged into one when every operand is contiguous across both."""
        dims = [(d, [s[i] for s in strides]) for i, d in enumerate(shape) if d != 1]
        merged: list[tuple[Dim, list[Dim]]] = []
        for d, ss in dims:
            if merged and all(_eq(ps, s * d) for ps, s in zip(merged[-1][1], ss, strict=True)):
                pd, _ = merged[-1]
                merged[-1] = (pd * d, ss)
            else:
                merged.append((d, ss))
        return merged

    # ---- the function ---------------------------------------------------------------------------
    def function(self) -> str:
        g, w = self.g, self.w
        params = ", ".join(["uint8_t* W", "uint8_t* A"] + [f"int32_t S_{s}" for s in g.symbols])
        with w.block(f"WT_EXPORT int32_t {ENTRY}({params})"):
            for v in self._used_values():
                ct = CTYPE[self.t(v).dtype]
                if v in self.plan.weight_offsets:
                    w.line(
                        f"const {ct}* const {self.var(v)} = (const {ct}*)(W + {self.plan.weight_offsets[v]});"
                    )
                else:
                    w.line(f"{ct}* const {self.var(v)} = ({ct}*)(A + {self.plan.offsets[v]});")
            for k, n in enumerate(g.nodes):
                if n.op in ALIAS:
                    continue
                w.line(
                    f"/* n{k} {n.op} -> {n.outputs[0]}{': ' + _c_comment(n.source) if n.source else ''} */"
                )
                self.node(n)
            w.line("return 0;")
        return w.source()

    def _used_values(self) -> list[str]:
        seen: dict[str, None] = {}
        for n in self.g.nodes:
            if n.op in ALIAS:
                continue
            for v in (*n.inputs, *n.outputs):
                if v:  # scalars are inlined as literals in loops, but kernels take them by pointer
                    seen[v] = None
        return list(seen)

    # ---- ops ------------------------------------------------------------------------------------
    def node(self, n: Node) -> None:
        op = n.op
        if op in ELEMENTWISE:
            return self.elementwise(n)
        if op in REDUCE or op == "argmax":
            return self.reduce(n)
        fn = getattr(self, "op_" + op, None)
        if fn is None:
            raise UnsupportedOpError(f"codegen has no rule for IR op {op!r}")
        fn(n)

    def elementwise(self, n: Node) -> None:
        """One elementwise op, or a fused program of them: codegen/fused.py (SIMD when all-f32)."""
        ot = self.t(n.outputs[0])
        strides = [contiguous_strides(ot.shape)] + [
            broadcast_strides(self.t(i).shape, ot.shape) for i in n.inputs
        ]
        emit_elementwise(self, n, strides)

    op_fused_elementwise = elementwise

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

    def op_permute(self, n: Node) -> None:
        x, out = n.inputs[0], n.outputs[0]
        xs = contiguous_strides(self.t(x).shape)
        shape = self.t(out).shape
        self.copy_loop(shape, out, contiguous_strides(shape), "0", x, [xs[p] for p in n.attrs["perm"]], "0")

    def op_expand(self, n: Node) -> None:
        x, out = n.inputs[0], n.outputs[0]
        shape = self.t(out).shape
        self.copy_loop(
            shape, out, contiguous_strides(shape), "0", x, broadcast_strides(self.t(x).shape, shape), "0"
        )

    def op_slice(self, n: Node) -> None:
        x, out = n.inputs[0], n.outputs[0]
        a = n.attrs
        xs = contiguous_strides(self.t(x).shape)
        src = list(xs)
        src[a["axis"]] = xs[a["axis"]] * a["step"]
        shape = self.t(out).shape
        self.copy_loop(shape, out, contiguous_strides(shape), "0", x, src, c_dim(a["start"] * xs[a["axis"]]))

    def op_cat(self, n: Node) -> None:
        out, axis = n.outputs[0], n.attrs["axis"]
        os = contiguous_strides(self.t(out).shape)
        start: Dim = 0
        for x in n.inputs:
            xt = self.t(x)
            self.copy_loop(
                xt.shape, out, os, c_dim(sympy.expand(start * os[axis])), x, contiguous_strides(xt.shape), "0"
            )
            start = start + xt.shape[axis]

    def op_pad(self, n: Node) -> None:
        x, out = n.inputs[0], n.outputs[0]
        ot, xt = self.t(out), self.t(x)
        os = contiguous_strides(ot.shape)
        fill = literal(n.attrs.get("value", 0), ot.dtype)
        self.loops(ot.shape, [os], ["0"], lambda o: self.w.line(f"{self.var(out)}[{o[0]}] = {fill};"))
        base = sum((b * s for (b, _), s in zip(n.attrs["pads"], os, strict=True)), sympy.Integer(0))
        self.copy_loop(xt.shape, out, os, c_dim(sympy.expand(base)), x, contiguous_strides(xt.shape), "0")

    def op_gather(self, n: Node) -> None:
        x, idx = n.inputs[0], n.inputs[1]
        out, axis = n.outputs[0], n.attrs["axis"]
        shape = self.t(out).shape
        xs = contiguous_strides(self.t(x).shape)
        xsel = [0 if j == axis else s for j, s in enumerate(xs)]
        lim, step = c_dim(self.t(x).shape[axis]), c_dim(xs[axis])

        def body(o: list[str]) -> None:
            i = f"wt_check_index({self.at(idx, o[2])}, {lim})"
            self.w.line(f"{self.var(out)}[{o[0]}] = {self.var(x)}[{o[1]} + {i} * {step}];")

        cs = contiguous_strides(shape)
        self.loops(shape, [cs, xsel, cs], ["0", "0", "0"], body)

    def op_index(self, n: Node) -> None:
        x, idxs, out = n.inputs[0], n.inputs[1:], n.outputs[0]
        ot, xt = self.t(out), self.t(x)
        k = len(idxs)
        nb = ot.rank - (xt.rank - k)
        bshape = ot.shape[:nb]
        xs = contiguous_strides(xt.shape)
        strides = [contiguous_strides(ot.shape), [0] * nb + xs[k:]]
        for i in idxs:
            strides.append(broadcast_strides(self.t(i).shape, bshape) + [0] * (ot.rank - nb))

        def body(o: list[str]) -> None:
            terms = [o[1]] + [
                f"wt_check_index({self.at(i, o[2 + j])}, {c_dim(xt.shape[j])}) * {c_dim(xs[j])}"
                for j, i in enumerate(idxs)
            ]
            self.w.line(f"{self.var(out)}[{o[0]}] = {self.var(x)}[{' + '.join(terms)}];")

        self.loops(ot.shape, strides, ["0"] * len(strides), body)

    def op_arange(self, n: Node) -> None:
        out, a = n.outputs[0], n.attrs
        ct = CTYPE[a["dtype"]]
        with self.w.block(f"for (int i = 0; i < {c_dim(self.t(out).shape[0])}; i++)"):
            self.w.line(f"{self.var(out)}[i] = ({ct})({c_dim(a['start'])} + (int64_t)i * {a['step']});")

    def op_full(self, n: Node) -> None:
        out, a = n.outputs[0], n.attrs
        ot = self.t(out)
        v = a["value"]
        val = f"({CTYPE[ot.dtype]})({c_dim(v)})" if isinstance(v, sympy.Expr) else literal(v, ot.dtype)
        self.loops(
            ot.shape,
            [contiguous_strides(ot.shape)],
            ["0"],
            lambda o: self.w.line(f"{self.var(out)}[{o[0]}] = {val};"),
        )

    def reduce(self, n: Node) -> None:
        x, out, a = n.inputs[0], n.outputs[0], n.attrs
        xt = self.t(x)
        axes = sorted({ax % max(xt.rank, 1) for ax in (a["axes"] if n.op != "argmax" else (a["axis"],))})
        kept = [j for j in range(xt.rank) if j not in axes]
        xs = contiguous_strides(xt.shape)
        kshape = tuple(xt.shape[j] for j in kept)
        ct = CTYPE[xt.dtype]
        is_f = xt.dtype == "f32"
        lo = "(-__builtin_inff())" if is_f else "INT64_MIN"
        hi = "__builtin_inff()" if is_f else "INT64_MAX"
        init, step = {
            "reduce_sum": ("0", "acc += {v};"),
            "reduce_mean": ("0", "acc += {v};"),
            "reduce_prod": ("1", "acc *= {v};"),
            "reduce_max": (lo, "if ({v} > acc || {v} != {v}) acc = {v};"),
            "reduce_min": (hi, "if ({v} < acc || {v} != {v}) acc = {v};"),
            "reduce_any": ("0", "acc = acc || {v};"),
            "reduce_all": ("1", "acc = acc && {v};"),
            "argmax": (lo, "if ({v} > acc) {{ acc = {v}; best = {i}; }}"),
        }[n.op]
        acc_t = "uint8_t" if n.op in ("reduce_any", "reduce_all") else ct
        count = c_dim(numel([xt.shape[j] for j in axes]))
        rshape = tuple(xt.shape[j] for j in axes)

        def outer(o: list[str]) -> None:
            self.w.line("{")
            self.w.depth += 1
            self.w.line(f"{acc_t} acc = {init};")
            if n.op == "argmax":
                self.w.line("int64_t best = 0;")
                self.w.line("int64_t pos = 0;")

            def inner(i: list[str]) -> None:
                v = f"{self.var(x)}[{i[0]}]"
                self.w.line(step.format(v=v, i="pos"))
                if n.op == "argmax":
                    self.w.line("pos++;")

            self.loops(rshape, [[xs[j] for j in axes]], [o[1]], inner)
            res = {"reduce_mean": f"acc / ({ct})({count})", "argmax": "best"}.get(n.op, "acc")
            self.w.line(f"{self.var(out)}[{o[0]}] = {res};")
            self.w.depth -= 1
            self.w.line("}")

        self.loops(kshape, [contiguous_strides(kshape), [xs[j] for j in kept]], ["0", "0"], outer)

    def op_scatter_value(self, n: Node) -> None:
        x, idx, out = n.inputs[0], n.inputs[1], n.outputs[0]
        xt, axis = self.t(x), n.attrs["axis"]
        xs = contiguous_strides(xt.shape)
        self.copy_loop(xt.shape, out, xs, "0", x, xs, "0")
        xsel = [0 if j == axis else s for j, s in enumerate(xs)]
        ishape = self.t(idx).shape
        lim, step = c_dim(xt.shape[axis]), c_dim(xs[axis])
        val = literal(n.attrs["value"], xt.dtype)

        def body(o: list[str]) -> None:
            i = f"wt_check_index({self.at(idx, o[1])}, {lim})"
            self.w.line(f"{self.var(out)}[{o[0]} + {i} * {step}] = {val};")

        self.loops(ishape, [xsel, contiguous_strides(ishape)], ["0", "0"], body)

    def op_topk(self, n: Node) -> None:
        """Per row, insertion into the sorted output row: O(n·k), no scratch memory; ties keep the
        lower index first, like the interpreter's stable sort."""
        x, (vals, idxs) = n.inputs[0], n.outputs
        xt, a = self.t(x), n.attrs
        axis, k = a["axis"], a["k"]
        xs = contiguous_strides(xt.shape)
        os_ = contiguous_strides(self.t(vals).shape)
        shape = tuple(1 if j == axis else d for j, d in enumerate(xt.shape))
        better = ">" if a["largest"] else "<"
        ct = CTYPE[xt.dtype]
        v, ix, xv = self.var(vals), self.var(idxs), self.var(x)
        xst, ost = c_dim(xs[axis]), c_dim(os_[axis])

        def body(o: list[str]) -> None:
            w = self.w
            at = lambda p: f"[{o[1]} + ({p}) * {ost}]"  # noqa: E731
            w.line("{")
            w.depth += 1
            w.line("int cnt = 0;")
            with w.block(f"for (int i = 0; i < {c_dim(xt.shape[axis])}; i++)"):
                w.line(f"{ct} val = {xv}[{o[0]} + i * {xst}];")
                w.line(f"if (cnt == {k} && !(val {better} {v}{at(k - 1)})) continue;")
                w.line(f"int p = cnt < {k} ? cnt++ : {k} - 1;")
                with w.block(f"while (p > 0 && val {better} {v}{at('p - 1')})"):
                    w.line(f"{v}{at('p')} = {v}{at('p - 1')};")
                    w.line(f"{ix}{at('p')} = {ix}{at('p - 1')};")
                    w.line("p--;")
                w.line(f"{v}{at('p')} = val;")
                w.line(f"{ix}{at('p')} = i;")
            w.depth -= 1
            w.line("}")

        self.loops(shape, [xs, os_], ["0", "0"], body)

    def op_cumsum(self, n: Node) -> None:
        x, out, axis = n.inputs[0], n.outputs[0], n.attrs["axis"]
        xt = self.t(x)
        xs = contiguous_strides(xt.shape)
        shape = tuple(1 if j == axis else d for j, d in enumerate(xt.shape))
        ct = CTYPE[xt.dtype]

        def body(o: list[str]) -> None:
            with self.w.block(f"{{ {ct} acc = 0; for (int k = 0; k < {c_dim(xt.shape[axis])}; k++)"):
                self.w.line(f"acc += {self.var(x)}[{o[0]} + k * {c_dim(xs[axis])}];")
                self.w.line(f"{self.var(out)}[{o[0]} + k * {c_dim(xs[axis])}] = acc;")
            self.w.line("}")

        self.loops(shape, [xs], ["0"], body)

    def _outer_n_inner(self, shape: tuple[Dim, ...], axis: int) -> tuple[str, str, str]:
        return c_dim(numel(list(shape[:axis]))), c_dim(shape[axis]), c_dim(numel(list(shape[axis + 1 :])))

    def op_softmax(self, n: Node, log: int = 0) -> None:
        x, out = n.inputs[0], n.outputs[0]
        o, m, i = self._outer_n_inner(self.t(x).shape, n.attrs["axis"])
        self.w.line(f"wt_softmax_f32({self.var(out)}, {self.var(x)}, {o}, {m}, {i}, {log});")

    def op_log_softmax(self, n: Node) -> None:
        self.op_softmax(n, log=1)

    def op_attention(self, n: Node) -> None:
        """wt_attention_f32 on strided views (passes/fuse_attention.py): offsets go into the pointers."""
        a, (q, k, v), mask = n.attrs, n.inputs[:3], (n.inputs[3] if len(n.inputs) > 3 else "")
        ptr = lambda val, spec: f"{self.var(val)} + {c_dim(spec[0])}"  # noqa: E731
        views = [("q", a["q"]), ("k", a["k"]), ("v", a["v"]), ("o", a["out"])]
        fields = [*zip(("B", "H", "Lq", "Lk", "D", "Dv"), a["dims"], strict=True)]
        for p, spec in views:
            fields += [(f"{p}_{s}", x) for s, x in zip(("sb", "sh", "sl"), spec[1:], strict=True)]
        if mask:
            fields += [*zip(("m_sb", "m_sh", "m_sq", "m_sk"), a["mask"][1:], strict=True)]
        init = ", ".join(f".{f} = {c_dim(x)}" for f, x in fields)
        init += f", .scale = {literal(a['scale'], 'f32')}, .causal = {int(a['causal'])}"
        init += f", .safe = {int(a['safe'])}"
        self.w.line(f"{{ const wt_attention_args args = {{{init}}};")
        self.w.line(
            f"  wt_attention_f32({ptr(n.outputs[0], a['out'])}, {ptr(q, a['q'])}, {ptr(k, a['k'])}, "
            f"{ptr(v, a['v'])}, {ptr(mask, a['mask']) if mask else '0'}, &args); }}"
        )

    def _opt(self, v: str) -> str:
        return self.var(v) if v else "0"

    def op_layer_norm(self, n: Node) -> None:
        x, out = n.inputs[0], n.outputs[0]
        shape = self.t(x).shape
        k = n.attrs["n_axes"]
        outer, inner = c_dim(numel(list(shape[:-k]))), c_dim(numel(list(shape[-k:])))
        wv, bv = (*n.inputs, "", "")[1:3]
        self.w.line(
            f"wt_layer_norm_f32({self.var(out)}, {self.var(x)}, {self._opt(wv)}, {self._opt(bv)}, "
            f"{outer}, {inner}, {literal(n.attrs['eps'], 'f32')});"
        )

    def op_matmul(self, n: Node) -> None:
        a, b, out = n.inputs[0], n.inputs[1], n.outputs[0]
        at, bt, ot = self.t(a), self.t(b), self.t(out)
        if at.dtype != "f32":
            raise UnsupportedOpError(f"matmul on {at.dtype} tensors")
        M, K, N = at.shape[-2], at.shape[-1], bt.shape[-1]
        batch = numel(list(ot.shape[:-2]))

        def bstride(t: TensorType, size: Dim) -> Dim:
            if t.rank == 2 or _eq(numel(list(t.shape[:-2])), 1):
                return 0
            if _eq(numel(list(t.shape[:-2])), batch):
                return size
            raise UnsupportedOpError(f"matmul with partially broadcast batch dims {at} @ {bt}")

        bias = n.inputs[2] if len(n.inputs) > 2 else ""
        self.w.line(
            f"wt_matmul_f32({self.var(out)}, {self.var(a)}, {self.var(b)}, {self._opt(bias)}, "
            f"{c_dim(batch)}, {c_dim(M)}, {c_dim(N)}, {c_dim(K)}, {c_dim(bstride(at, M * K))}, "
            f"{c_dim(bstride(bt, K * N))});"
        )

    def op_matmul_packed(self, n: Node) -> None:
        a, wp, out = n.inputs[0], n.inputs[1], n.outputs[0]
        at = self.t(a)
        rows = c_dim(numel(list(at.shape[:-1])))  # the weights are shared: every leading dim is a row
        bias = n.inputs[2] if len(n.inputs) > 2 else ""
        act = n.attrs.get("act")  # fused epilogue (passes/fuse_epilogue.py): a WT_ACT_* code of wt_act.h
        self.w.line(
            f"wt_gemm_packed_act_f32({self.var(out)}, {self.var(a)}, {self.var(wp)}, {self._opt(bias)}, "
            f"1, {rows}, {n.attrs['n']}, {c_dim(at.shape[-1])}, 0, {GEMM_ACTS[act] if act else 0});"
        )

    def _conv_dims(self, n: Node, kernel: tuple[Dim, Dim], oc: Dim) -> list[Dim]:
        a, xs, os = n.attrs, self.t(n.inputs[0]).shape, self.t(n.outputs[0]).shape
        return [*xs, oc, *kernel, os[2], os[3], *a["stride"], *a["padding"], *a["dilation"]]

    def _conv_act(self, n: Node) -> str:
        lo, hi = CONV_ACTS[n.attrs["act"]] if n.attrs.get("act") else (-math.inf, math.inf)
        return f"{literal(lo, 'f32')}, {literal(hi, 'f32')}"

    def op_conv2d(self, n: Node) -> None:
        """The reference direct kernel: constant float weights were rewritten by passes/pack_conv.py."""
        x, wt, out = n.inputs[0], n.inputs[1], n.outputs[0]
        ws = self.t(wt).shape
        bias = n.inputs[2] if len(n.inputs) > 2 else ""
        dims = ", ".join(c_dim(d) for d in self._conv_dims(n, (ws[2], ws[3]), ws[0]))
        self.w.line(
            f"wt_conv2d_f32({self.var(out)}, {self.var(x)}, {self.var(wt)}, {self._opt(bias)}, {dims}, "
            f"{n.attrs['groups']}, {self._conv_act(n)});"
        )

    def op_dwconv2d(self, n: Node) -> None:
        x, wt, (out, scratch) = n.inputs[0], n.inputs[1], n.outputs
        ws = self.t(wt).shape
        bias = n.inputs[2] if len(n.inputs) > 2 else ""
        dims = ", ".join(c_dim(d) for d in self._conv_dims(n, (ws[2], ws[3]), ws[0]))
        self.w.line(
            f"wt_dwconv2d_f32({self.var(out)}, {self.var(x)}, {self.var(wt)}, {self._opt(bias)}, "
            f"{self.var(scratch)}, {c_dim(n.attrs['scratch'])}, {dims}, {self._conv_act(n)});"
        )

    def op_conv2d_packed(self, n: Node) -> None:
        x, wp, (out, scratch) = n.inputs[0], n.inputs[1], n.outputs
        a = n.attrs
        bias = n.inputs[2] if len(n.inputs) > 2 else ""
        dims = ", ".join(c_dim(d) for d in self._conv_dims(n, a["kernel"], a["oc"]))
        self.w.line(
            f"wt_conv2d_packed_f32({self.var(out)}, {self.var(x)}, {self.var(wp)}, {self._opt(bias)}, "
            f"{self.var(scratch)}, {a['scratch']}, {dims}, {a['groups']}, {self._conv_act(n)});"
        )

    def _pool(self, n: Node, is_max: int) -> None:
        x, out, a = n.inputs[0], n.outputs[0], n.attrs
        xs, os = self.t(x).shape, self.t(out).shape
        dims = [
            xs[0] * xs[1],
            xs[2],
            xs[3],
            os[2],
            os[3],
            *a["kernel"],
            *a["stride"],
            *a["padding"],
            *a.get("dilation", (1, 1)),
            is_max,
            int(a.get("count_include_pad", True)),
            int(a.get("divisor_override") or 0),
        ]
        self.w.line(
            f"wt_pool2d_f32({self.var(out)}, {self.var(x)}, " + ", ".join(c_dim(d) for d in dims) + ");"
        )

    def op_max_pool2d(self, n: Node) -> None:
        self._pool(n, 1)

    def op_avg_pool2d(self, n: Node) -> None:
        self._pool(n, 0)

    def op_adaptive_avg_pool2d(self, n: Node) -> None:
        x, out = n.inputs[0], n.outputs[0]
        xs, os = self.t(x).shape, self.t(out).shape
        dims = [xs[0] * xs[1], xs[2], xs[3], os[2], os[3]]
        self.w.line(
            f"wt_adaptive_avg_pool2d_f32({self.var(out)}, {self.var(x)}, "
            + ", ".join(c_dim(d) for d in dims)
            + ");"
        )


def _c_comment(s: str) -> str:
    return s.replace("*/", "* /").replace("\n", " ")[:160]


def generate_c(g: Graph, plan: MemoryPlan, header: str = "") -> str:
    body = Emitter(g, plan).function()
    return f'/* {header} */\n#include "wt_kernels.h"\n\n{body}'
