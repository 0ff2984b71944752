/* Intra-op parallelism: one parallel-for, run by N instances of the module over one shared memory.
 *
 * A kernel (or a loop of the generated code) describes its work as `n` chunks and a task that
 * computes one chunk alone (a task id: wt_run_task(task, args, chunk)). The chunks partition the
 * OUTPUT: each output element belongs to exactly one chunk, and a chunk computes its elements with the same operations
 * in the same order as a single-threaded run would. How a problem is cut into chunks depends only
 * on its shapes, never on the thread count, so the result is bit-identical whatever the number of
 * threads (1, 2, 8) and whichever thread runs which chunk; no reduction is ever split.
 *
 * Single-threaded builds (no -matomics): wt_parallel_for is a plain loop over the chunks.
 *
 * Threaded builds (-matomics, shared memory imported from the host): the host instantiates the
 * module N times over one shared memory (weights live once) and gives every instance but the
 * first its own stack. Instance 0, the leader, runs `wt_run`; instances 1..N-1 sit in
 * `wt_worker(tid)`. wt_parallel_for on the leader publishes the job in `wt_pool` (a static, hence
 * in the shared memory), wakes sleeping workers, and every thread — the leader included — claims
 * chunks with a compare-and-swap on one 64-bit word (generation << 32 | chunks << 16 | next) until
 * none is left; the leader then waits until every claimed chunk is done. A worker that is slow to
 * wake simply claims nothing: the leader never waits for a thread, only for claimed chunks.
 * Workers spin briefly after a job (the next one usually follows within microseconds), then sleep
 * in memory.atomic.wait64. The leader spins while waiting, and sleeps too when the host allows it
 * (`can_block`; a browser's main thread may not block).
 *
 * The host drives the pool through wt_pool_ctl (see WT_CTL_*): the thread count, whether the
 * leader may block, quitting, recovery after a trap, and per-thread chunk counters (which prove
 * that more than one thread ran).
 */
#pragma once
#include "wt_base.h"

/* Tasks are named by a number, not a function pointer, so a module has no function table. The
 * generated code defines wt_run_task (codegen/parallel.py): a switch over the kernel tasks it uses
 * (the ids below, each a WT_TASK_* -> chunk function pair listed in codegen/parallel.py
 * KERNEL_TASKS) and its own loops (ids from WT_TASK_MODEL on); unused kernels stay out of the link. */
#define WT_TASK_GEMM 1
#define WT_TASK_MATMUL 2
#define WT_TASK_SOFTMAX 3
#define WT_TASK_LAYER_NORM 4
#define WT_TASK_ATTENTION 5
#define WT_TASK_CONV 6
#define WT_TASK_CONV_REF 7
#define WT_TASK_DWCONV 8
#define WT_TASK_POOL 9
#define WT_TASK_ADAPTIVE_POOL 10
#define WT_TASK_KV_ATTENTION 11
/* reduced-precision weights (wt_f16.h, wt_q8.h, wt_conv_q8.h) */
#define WT_TASK_GEMM_F16 12
#define WT_TASK_CONV_F16 13
#define WT_TASK_Q8_ROWS 14
#define WT_TASK_GEMM_Q8 15
#define WT_TASK_Q8_MINMAX 16
#define WT_TASK_Q8_IMAGE 17
#define WT_TASK_CONV_Q8 18
#define WT_TASK_DW_Q8 19
#define WT_TASK_MODEL 1000
WT_KERNEL void wt_run_task(int id, const void* args, int chunk);
WT_KERNEL void wt_gemm_chunk(const void* args, int chunk);
WT_KERNEL void wt_matmul_chunk(const void* args, int chunk);
WT_KERNEL void wt_softmax_chunk(const void* args, int chunk);
WT_KERNEL void wt_layer_norm_chunk(const void* args, int chunk);
WT_KERNEL void wt_att_chunk(const void* args, int chunk);
WT_KERNEL void wt_conv_chunk(const void* args, int chunk);
WT_KERNEL void wt_conv_ref_chunk(const void* args, int chunk);
WT_KERNEL void wt_dw_chunk(const void* args, int chunk);
WT_KERNEL void wt_pool_chunk(const void* args, int chunk);
WT_KERNEL void wt_adaptive_chunk(const void* args, int chunk);
WT_KERNEL void wt_kv_att_chunk(const void* args, int chunk);
WT_KERNEL void wt_gemm_f16_chunk(const void* args, int chunk);
WT_KERNEL void wt_conv_f16_chunk(const void* args, int chunk);
WT_KERNEL void wt_q8_rows_chunk(const void* args, int chunk);
WT_KERNEL void wt_gemm_q8_chunk(const void* args, int chunk);
WT_KERNEL void wt_q8_minmax_chunk(const void* args, int chunk);
WT_KERNEL void wt_q8_image_chunk(const void* args, int chunk);
WT_KERNEL void wt_conv_q8_chunk(const void* args, int chunk);
WT_KERNEL void wt_dw_q8_chunk(const void* args, int chunk);

#define WT_MAX_THREADS 64  /* = wasm_torch/runtime/threads.py MAX_THREADS */
#define WT_MAX_CHUNKS 32767 /* chunks of one job: they share 16 bits of the pool word */

/* Chunks for `total` units of work of `unit_work` each (any consistent measure, e.g. FLOPs):
 * enough that several threads balance, few enough that each is worth a claim. A function of the
 * problem only (never of the thread count), as the bit-identical guarantee needs. */
#define WT_CHUNK_WORK 65536   /* aim for at least this much work per chunk */
#define WT_CHUNK_TARGET 64    /* and at most this many chunks */
WT_INLINE int wt_chunks_for(int64_t total, int64_t unit_work) {
    if (total <= 1) return total < 1 ? 0 : 1;
    int64_t work = total * (unit_work > 0 ? unit_work : 1);
    int64_t n = work / WT_CHUNK_WORK;
    n = n < 1 ? 1 : n;
    n = n > WT_CHUNK_TARGET ? WT_CHUNK_TARGET : n;
    return (int)(n > total ? total : n);
}

/* The range [lo, hi) of chunk c when `total` items are cut into n near-equal chunks whose sizes are
 * multiples of `align` (except the last). */
WT_INLINE void wt_chunk_range(int64_t total, int n, int c, int align, int64_t* lo, int64_t* hi) {
    int64_t per = (total + n - 1) / n;
    per = (per + align - 1) / align * align;
    int64_t a = per * c, b = a + per;
    *lo = a < total ? a : total;
    *hi = b < total ? b : total;
}

#ifdef __wasm_atomics__
WT_KERNEL void wt_parallel_for(int task, const void* args, int n);
#else
WT_INLINE void wt_parallel_for(int task, const void* args, int n) {
    for (int c = 0; c < n; c++) wt_run_task(task, args, c);
}
#endif

/* Host controls of the threaded build (wt_pool_ctl(op, arg)). */
#define WT_CTL_THREADS 0   /* arg: threads that will run wt_worker/wt_run (1 = everything on the leader) */
#define WT_CTL_CAN_BLOCK 1 /* arg: 1 if the leader may sleep in memory.atomic.wait32 */
#define WT_CTL_QUIT 2      /* every wt_worker returns */
#define WT_CTL_RESET 3     /* after a trap: cancel the job's unclaimed chunks, clear the failure flag */
#define WT_CTL_BUSY 4      /* -> workers still inside a claimed chunk (wait for 0 after RESET) */
#define WT_CTL_CHUNKS 5    /* -> chunks run by thread `arg` since the last CLEAR */
#define WT_CTL_CLEAR 6     /* zero the chunk counters */
#define WT_CTL_FAILED 7    /* worker `arg` trapped inside a chunk: count it done, make the leader trap */
#define WT_CTL_JOBS 8      /* -> parallel jobs published since the last CLEAR */
