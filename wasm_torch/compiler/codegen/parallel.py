"""Parallel loops in the generated code: a loop nest becomes a task `fn(ctx, chunk)` run by
`wt_parallel_for` (kernels/wt_threads.h).

    static void wt_task_7(const void* p, int chunk) {          <- one per parallel node (id WT_TASK_MODEL + 7)
        const wt_ctx* ctx = (const wt_ctx*)p;                   <- W, A and the symbols of wt_run
        uint8_t* const W = ctx->W; uint8_t* const A = ctx->A; const int32_t S_seq = ctx->S_seq;
        float* const v_x = (float*)(A + 1024); ...              <- the node's values
        int lo, hi; wt_task_range(total, wt_chunks_for(total, unit), chunk, align, &lo, &hi);
        for (int i1 = lo; i1 < hi; i1++) ...                    <- the node's loops, outermost dim cut
    }
    ... in wt_run: wt_parallel_for(WT_TASK_MODEL + 7, &ctx, wt_chunks_for(total, unit));
    WT_KERNEL void wt_run_task(int id, const void* p, int chunk) {   <- tasks by number: no function table
        switch (id) { case WT_TASK_GEMM: wt_gemm_chunk(p, chunk); return; ...      <- kernels this model calls
                      case WT_TASK_MODEL + 7: wt_task_7(p, chunk); return; ... default: __builtin_trap(); } }

The cut depends only on the shapes (never on the thread count) and never splits a reduction: every
output element is computed by exactly one chunk with the operations a single-threaded run uses, so
results are bit-identical whatever the number of threads. The same C is compiled for every build
variant; in a single-threaded build wt_parallel_for is a plain loop over the chunks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..ir.graph import Dim
from .dims import c_dim
from .writer import CWriter

if TYPE_CHECKING:
    from .emit import Emitter

# Below this many units of work (elements x program steps) a loop stays inline in wt_run: one
# chunk would be all there is (wt_chunks_for in wt_threads.h aims at 65536 per chunk).
MIN_PARALLEL_WORK = 131072
CTX = "wt_ctx"

# The kernels that split their work with wt_parallel_for: entry point -> (task id, chunk function),
# as in kernels/wt_threads.h. wt_run_task lists the tasks of the kernels a model calls, so the
# linker still drops every kernel it does not (tests/compiler/test_threads.py checks the table
# against the kernel sources).
_GEMM = ("WT_TASK_GEMM", "wt_gemm_chunk")
KERNEL_TASKS: dict[str, tuple[str, str]] = {
    "wt_gemm_packed_act_f32": _GEMM,
    "wt_gemm_packed_f32": _GEMM,
    "wt_matmul_f32": ("WT_TASK_MATMUL", "wt_matmul_chunk"),
    "wt_softmax_f32": ("WT_TASK_SOFTMAX", "wt_softmax_chunk"),
    "wt_layer_norm_f32": ("WT_TASK_LAYER_NORM", "wt_layer_norm_chunk"),
    "wt_attention_f32": ("WT_TASK_ATTENTION", "wt_att_chunk"),
    "wt_conv2d_packed_f32": ("WT_TASK_CONV", "wt_conv_chunk"),
    "wt_conv2d_f32": ("WT_TASK_CONV_REF", "wt_conv_ref_chunk"),
    "wt_dwconv2d_f32": ("WT_TASK_DWCONV", "wt_dw_chunk"),
    "wt_pool2d_f32": ("WT_TASK_POOL", "wt_pool_chunk"),
    "wt_adaptive_avg_pool2d_f32": ("WT_TASK_ADAPTIVE_POOL", "wt_adaptive_chunk"),
    "wt_kv_attention_f32": ("WT_TASK_KV_ATTENTION", "wt_kv_att_chunk"),
    # reduced-precision weights (ops/quant.py)
    "wt_gemm_f16_f32": ("WT_TASK_GEMM_F16", "wt_gemm_f16_chunk"),
    "wt_conv2d_f16_f32": ("WT_TASK_CONV_F16", "wt_conv_f16_chunk"),
    "wt_q8_rows": ("WT_TASK_Q8_ROWS", "wt_q8_rows_chunk"),
    "wt_gemm_q8_f32": ("WT_TASK_GEMM_Q8", "wt_gemm_q8_chunk"),
    "wt_q8_minmax_f32": ("WT_TASK_Q8_MINMAX", "wt_q8_minmax_chunk"),
    "wt_q8_image_f32": ("WT_TASK_Q8_IMAGE", "wt_q8_image_chunk"),
    "wt_conv2d_q8_f32": ("WT_TASK_CONV_Q8", "wt_conv_q8_chunk"),
    "wt_dwconv2d_q8_f32": ("WT_TASK_DW_Q8", "wt_dw_q8_chunk"),
}


def ctx_typedef(symbols: list[str]) -> str:
    fields = " ".join(["uint8_t* W;", "uint8_t* A;", *[f"int32_t S_{s};" for s in symbols]])
    return f"typedef struct {{ {fields} }} {CTX};\n"


def worth_parallel(work: Dim) -> bool:
    """Static work below the threshold stays inline; symbolic work is decided at run time."""
    return not isinstance(work, int) or work >= MIN_PARALLEL_WORK


class Tasks:
    """The task functions of one generated module, in emission order."""

    def __init__(self, em: Emitter):
        self.em = em
        self.functions: list[str] = []

    @contextmanager
    def _writer(self, w: CWriter) -> Iterator[None]:
        em = self.em
        saved, em.w = em.w, w
        try:
            yield
        finally:
            em.w = saved

    def parallel_for(
        self,
        values: list[str],
        total: Dim,
        unit: Dim,
        body: Callable[[str, str], None],
        align: int = 1,
    ) -> None:
        """Emit `body(lo, hi)` (C for items [lo, hi) of `total`) as a task and call it from wt_run.

        values: the IR values the body reads or writes (declared inside the task); unit: the work
        of one item; align: chunk sizes are multiples of it (except the last)."""
        em = self.em
        k = len(self.functions)
        name = f"wt_task_{k}"
        total_c, unit_c = c_dim(total), c_dim(unit)
        chunks = f"wt_chunks_for({total_c}, {unit_c})"
        w = CWriter()
        with self._writer(w), w.block(f"static void {name}(const void* p, int chunk)"):
            w.line(f"const {CTX}* ctx = (const {CTX}*)p;")
            w.line("uint8_t* const W = ctx->W;")
            w.line("uint8_t* const A = ctx->A;")
            for s in em.g.symbols:
                w.line(f"const int32_t S_{s} = ctx->S_{s};")
            for v in dict.fromkeys(x for x in values if x):
                em.declare(v)
            w.line("int64_t lo64, hi64;")
            w.line(f"wt_chunk_range({total_c}, {chunks}, chunk, {align}, &lo64, &hi64);")
            w.line("const int lo = (int)lo64, hi = (int)hi64;")
            body("lo", "hi")
        self.functions.append(w.source())
        em.w.line(f"wt_parallel_for(WT_TASK_MODEL + {k}, &ctx, {chunks});")

    def dispatcher(self, body: str) -> str:
        """wt_run_task: the kernel tasks `body` (the C of wt_run) calls, then this module's loops."""
        w = CWriter()
        with w.block("WT_KERNEL void wt_run_task(int id, const void* p, int chunk)"):
            w.line("switch (id) {")
            seen: set[str] = set()
            for kernel, (task, fn) in KERNEL_TASKS.items():
                if task not in seen and re.search(rf"\b{kernel}\(", body):
                    seen.add(task)
                    w.line(f"case {task}: {fn}(p, chunk); return;")
            for k in range(len(self.functions)):
                w.line(f"case WT_TASK_MODEL + {k}: wt_task_{k}(p, chunk); return;")
            w.line("default: __builtin_trap();")
            w.line("}")
        return w.source()

