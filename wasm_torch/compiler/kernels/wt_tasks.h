/* A default wt_run_task (wt_threads.h) for C that calls kernels without a generated dispatcher: the
 * test and benchmark harnesses. It is weak: a generated model defines its own (codegen/parallel.py),
 * which replaces this one, and --gc-sections then drops it together with the kernels only it named.
 * Included last in kernels.c, after every kernel header. */
#pragma once
#include "wt_threads.h"

__attribute__((weak)) WT_KERNEL void wt_run_task(int id, const void* p, int chunk) {
    switch (id) {
    case WT_TASK_GEMM: wt_gemm_chunk(p, chunk); return;
    case WT_TASK_MATMUL: wt_matmul_chunk(p, chunk); return;
    case WT_TASK_SOFTMAX: wt_softmax_chunk(p, chunk); return;
    case WT_TASK_LAYER_NORM: wt_layer_norm_chunk(p, chunk); return;
    case WT_TASK_ATTENTION: wt_att_chunk(p, chunk); return;
    case WT_TASK_CONV: wt_conv_chunk(p, chunk); return;
    case WT_TASK_CONV_REF: wt_conv_ref_chunk(p, chunk); return;
    case WT_TASK_DWCONV: wt_dw_chunk(p, chunk); return;
    case WT_TASK_POOL: wt_pool_chunk(p, chunk); return;
    case WT_TASK_ADAPTIVE_POOL: wt_adaptive_chunk(p, chunk); return;
    case WT_TASK_KV_ATTENTION: wt_kv_att_chunk(p, chunk); return;
    case WT_TASK_GEMM_F16: wt_gemm_f16_chunk(p, chunk); return;
    case WT_TASK_CONV_F16: wt_conv_f16_chunk(p, chunk); return;
    case WT_TASK_Q8_ROWS: wt_q8_rows_chunk(p, chunk); return;
    case WT_TASK_GEMM_Q8: wt_gemm_q8_chunk(p, chunk); return;
    case WT_TASK_Q8_MINMAX: wt_q8_minmax_chunk(p, chunk); return;
    case WT_TASK_Q8_IMAGE: wt_q8_image_chunk(p, chunk); return;
    case WT_TASK_CONV_Q8: wt_conv_q8_chunk(p, chunk); return;
    case WT_TASK_DW_Q8: wt_dw_q8_chunk(p, chunk); return;
    default: __builtin_trap();
    }
}
