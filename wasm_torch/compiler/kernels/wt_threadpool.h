/* wt_threadpool.h: the thread pool behind wt_parallel_for in threaded builds (the protocol is described in
 * wt_threads.h). Compiled into kernels.c only with -matomics; exports wt_worker and wt_pool_ctl.
 *
 * One 64-bit word carries a job: generation (32 bits) | chunk count (16) | next chunk (16).
 * Claiming a chunk is a compare-and-swap that increments `next`; it fails when the generation
 * moved on, so a thread never runs a chunk of a job it did not see published. The leader writes
 * task/args and zeroes `done` before publishing the word, and publishes the next job only when
 * `done` reached the chunk count, so task/args read after a successful claim are that job's.
 */
#pragma once
#include "wt_threads.h"

#ifdef __wasm_atomics__

#define WT_SEQ __ATOMIC_SEQ_CST
#define WT_WORKER_SPINS 20000 /* polls of the word before a worker sleeps (tens of microseconds) */
#define WT_LEADER_SPINS 4000  /* polls of `done` before a leader that may block sleeps */
#define WT_LEADER_NAP_NS 200000

typedef struct {
    int64_t word; /* generation << 32 | n << 16 | next */
    int32_t done; /* chunks of the current job finished */
    int32_t busy; /* workers between a claim attempt and the end of their chunks */
    int32_t sleepers;
    int32_t quit;
    int32_t threads;
    int32_t can_block;
    int32_t failed;
    int32_t jobs;
    int32_t task;
    const void* args;
    int32_t chunks_run[WT_MAX_THREADS];
} wt_pool_t;

static wt_pool_t wt_pool __attribute__((aligned(64)));

WT_INLINE int wt_word_n(int64_t w) { return (int)((w >> 16) & 0xffff); }
WT_INLINE int wt_word_next(int64_t w) { return (int)(w & 0xffff); }

/* Claim the next chunk of whatever job is published; 0 when none is left. */
static int wt_claim(int* chunk, int* n) {
    int64_t w = __atomic_load_n(&wt_pool.word, WT_SEQ);
    for (;;) {
        int nn = wt_word_n(w), next = wt_word_next(w);
        if (next >= nn) return 0;
        if (__atomic_compare_exchange_n(&wt_pool.word, &w, w + 1, 0, WT_SEQ, WT_SEQ)) {
            *chunk = next;
            *n = nn;
            return 1;
        }
    }
}

/* Run chunks until none is left; returns how many this thread ran. */
static int wt_drain(int tid) {
    int c, n, ran = 0;
    while (wt_claim(&c, &n)) {
        int task = wt_pool.task;
        const void* args = wt_pool.args;
        wt_run_task(task, args, c);
        ran++;
        if (__atomic_add_fetch(&wt_pool.done, 1, WT_SEQ) == n)
            __builtin_wasm_memory_atomic_notify((int*)&wt_pool.done, 1);
    }
    if (ran && tid >= 0 && tid < WT_MAX_THREADS) wt_pool.chunks_run[tid] += ran; /* only `tid` writes it */
    return ran;
}

WT_KERNEL void wt_parallel_for(int task, const void* args, int n) {
    if (n <= 0) return;
    if (n == 1 || wt_pool.threads <= 1 || n > WT_MAX_CHUNKS) {
        for (int c = 0; c < n; c++) wt_run_task(task, args, c);
        wt_pool.chunks_run[0] += n;
        return;
    }
    wt_pool.task = task;
    wt_pool.args = args;
    wt_pool.jobs++;
    __atomic_store_n(&wt_pool.done, 0, WT_SEQ);
    int64_t gen = (__atomic_load_n(&wt_pool.word, WT_SEQ) >> 32) + 1;
    __atomic_store_n(&wt_pool.word, (gen << 32) | ((int64_t)n << 16), WT_SEQ);
    if (__atomic_load_n(&wt_pool.sleepers, WT_SEQ) > 0)
        __builtin_wasm_memory_atomic_notify((int*)&wt_pool.word, WT_MAX_THREADS);
    wt_drain(0);
    int spins = 0, d;
    while ((d = __atomic_load_n(&wt_pool.done, WT_SEQ)) < n) {
        if (++spins > WT_LEADER_SPINS && wt_pool.can_block)
            __builtin_wasm_memory_atomic_wait32(&wt_pool.done, d, WT_LEADER_NAP_NS);
    }
    if (__atomic_load_n(&wt_pool.failed, WT_SEQ)) __builtin_trap(); /* a worker trapped in a chunk */
}

/* A worker thread's life: claim chunks while there are some, spin a little, sleep; until quit. */
WT_EXPORT int32_t wt_worker(int32_t tid) {
    int spins = 0;
    for (;;) {
        if (__atomic_load_n(&wt_pool.quit, WT_SEQ)) return 0;
        int64_t w = __atomic_load_n(&wt_pool.word, WT_SEQ);
        if (wt_word_next(w) < wt_word_n(w)) {
            __atomic_add_fetch(&wt_pool.busy, 1, WT_SEQ);
            wt_drain(tid);
            __atomic_sub_fetch(&wt_pool.busy, 1, WT_SEQ);
            spins = 0;
            continue;
        }
        if (++spins < WT_WORKER_SPINS) continue;
        __atomic_add_fetch(&wt_pool.sleepers, 1, WT_SEQ);
        if (__atomic_load_n(&wt_pool.word, WT_SEQ) == w && !__atomic_load_n(&wt_pool.quit, WT_SEQ))
            __builtin_wasm_memory_atomic_wait64(&wt_pool.word, w, -1);
        __atomic_sub_fetch(&wt_pool.sleepers, 1, WT_SEQ);
        spins = 0;
    }
}

WT_EXPORT int32_t wt_pool_ctl(int32_t op, int32_t arg) {
    switch (op) {
    case WT_CTL_THREADS:
        wt_pool.threads = arg;
        return 0;
    case WT_CTL_CAN_BLOCK:
        wt_pool.can_block = arg;
        return 0;
    case WT_CTL_QUIT: {
        __atomic_store_n(&wt_pool.quit, 1, WT_SEQ);
        int64_t gen = (__atomic_load_n(&wt_pool.word, WT_SEQ) >> 32) + 1;
        __atomic_store_n(&wt_pool.word, gen << 32, WT_SEQ);
        __builtin_wasm_memory_atomic_notify((int*)&wt_pool.word, WT_MAX_THREADS);
        return 0;
    }
    case WT_CTL_RESET: {
        int64_t gen = (__atomic_load_n(&wt_pool.word, WT_SEQ) >> 32) + 1;
        __atomic_store_n(&wt_pool.word, gen << 32, WT_SEQ); /* no chunk left to claim */
        __atomic_store_n(&wt_pool.failed, 0, WT_SEQ);
        return 0;
    }
    case WT_CTL_BUSY:
        return __atomic_load_n(&wt_pool.busy, WT_SEQ);
    case WT_CTL_CHUNKS:
        return arg >= 0 && arg < WT_MAX_THREADS ? wt_pool.chunks_run[arg] : -1;
    case WT_CTL_CLEAR:
        for (int t = 0; t < WT_MAX_THREADS; t++) wt_pool.chunks_run[t] = 0;
        wt_pool.jobs = 0;
        return 0;
    case WT_CTL_FAILED:
        __atomic_store_n(&wt_pool.failed, 1, WT_SEQ);
        __atomic_sub_fetch(&wt_pool.busy, 1, WT_SEQ);
        __atomic_add_fetch(&wt_pool.done, 1, WT_SEQ);
        __builtin_wasm_memory_atomic_notify((int*)&wt_pool.done, 1);
        return 0;
    case WT_CTL_JOBS:
        return wt_pool.jobs;
    default:
        return -1;
    }
}

#endif
