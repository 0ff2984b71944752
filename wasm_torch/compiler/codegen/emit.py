"""IR graph + memory plan -> one C function, `wt_run(W, A, symbols...)`.

Every non-alias value is a contiguous buffer in the arena (A) or the weights region (W) at the
offsets of the memory plan. Each node is rendered by its op's C emitter (the `emit` facet of its
record in the op registry, `wasm_torch/compiler/ops/`): elementwise and data-movement ops as
strided loop nests, heavy ops as calls of hand-written kernels from `kernels/`. Dimensions may be
symbolic: they are printed as C expressions over the symbol arguments. Large loops become tasks
run by wt_parallel_for (codegen/parallel.py): the same C serves the single-threaded and the
threaded builds, with bit-identical results.
"""

from __future__ import annotations

from ..ir.graph import Graph
from ..ir.op import in_group, op_def
from ..options import CompileOptions
from .ctable import CTYPE
from .loops import Loops
from .memory_plan import MemoryPlan
from .parallel import Tasks, ctx_typedef

ENTRY = "wt_run"


class Emitter(Loops):
    def __init__(self, g: Graph, plan: MemoryPlan, options: CompileOptions):
        super().__init__(g, plan)
        self.options = options
        self.tasks = Tasks(self)

    def declare(self, v: str) -> None:
        """`v_<name>`: a typed pointer to the value's bytes in the weights (W) or the arena (A)."""
        ct = CTYPE[self.t(v).dtype]
        if v in self.plan.weight_offsets:
            self.w.line(f"const {ct}* const {self.var(v)} = (const {ct}*)(W + {self.plan.weight_offsets[v]});")
        else:
            self.w.line(f"{ct}* const {self.var(v)} = ({ct}*)(A + {self.plan.offsets[v]});")

    def function(self) -> str:
        g, w = self.g, self.w
        params = ", ".join(["uint8_t* W", "uint8_t* A"] + [f"int32_t S_{s}" for s in g.symbols])
        with w.block(f"WT_EXPORT int32_t {ENTRY}({params})"):
            w.line(f"const wt_ctx ctx = {{{', '.join(['W', 'A', *[f'S_{s}' for s in g.symbols]])}}};")
            for v in self._used_values():
                self.declare(v)
            for k, n in enumerate(g.nodes):
                d = op_def(n.op)
                if d.emit is None:  # an alias: the output shares the input's storage
                    continue
                w.line(
                    f"/* n{k} {n.op} -> {n.outputs[0]}{': ' + _c_comment(n.source) if n.source else ''} */"
                )
                d.emit(self, n)
            w.line("return 0;")
        return w.source()

    def _used_values(self) -> list[str]:
        seen: dict[str, None] = {}
        for n in self.g.nodes:
            if in_group(n.op, "alias"):
                continue
            for v in (*n.inputs, *n.outputs):
                if v:  # scalars are inlined as literals in loops, but kernels take them by pointer
                    seen[v] = None
        return list(seen)


def _c_comment(s: str) -> str:
    return s.replace("*/", "* /").replace("\n", " ")[:160]


def generate_c(g: Graph, plan: MemoryPlan, options: CompileOptions, header: str = "") -> str:
    em = Emitter(g, plan, options)
    body = em.function()
    tasks = "\n".join(em.tasks.functions)
    return (
        f'/* {header} */\n#include "wt_kernels.h"\n\n{ctx_typedef(list(g.symbols))}\n{tasks}\n'
        f"{em.tasks.dispatcher(body)}\n{body}"
    )
