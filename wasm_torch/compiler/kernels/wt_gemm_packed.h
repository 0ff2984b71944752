/* f32 GEMM against weights pre-packed at compile time, with a fused bias + activation epilogue.
 *
 * Packed layout of a K x N weight matrix (passes/pack_weights.py): ceil(N/16) panels, each K rows
 * of 16 consecutive columns, zero-padded past N: panel p, row k, lane c  <->  W[k][16p + c].
 *
 * Microkernel: 2 rows x 16 columns (8 v128 accumulators), "splat" style (XNNPACK's name): per 4 k,
 * one v128 load of A per row; per k, 4 loads of the panel row, one lane broadcast (i32x4.shuffle)
 * per A row, 8 mul + 8 add. It won a measured shoot-out (bench/gemm_variants.py, docs/compiler.md
 * "GEMM microkernels") whose shape comes from how wasmtime's Cranelift compiles it on x86-64:
 *  - Cranelift keeps a block's loads in program order and places the arithmetic at the block end,
 *    so every vector a block loads stays live to its end. An exit test after every k step makes
 *    each step its own block; without it 4 unrolled steps hold all their panel vectors at once and
 *    spill. Here 8 accumulators + 4 panel vectors + 2 A vectors + 2 temporaries fill the 16 xmm
 *    registers exactly (3x8 measured 3-10% slower; 4x8, 6x8 and 4x16 tiles spill).
 *  - v128.load32_splat becomes a scalar load + movd + broadcast; the shuffle is one pshufd.
 *  - an empty asm makes the pointers opaque once per 4 k, so clang keeps them as bases with the
 *    constant offsets folded into the loads, instead of one pointer add per load.
 *  - relaxed_madd was slower (Cranelift's vfmadd213 form copies a multiplicand every time) and
 *    Node 20 cannot load it, so the kernel is plain SIMD128 mul + add.
 * Edges: a 1-row tile for an odd last row (same code, fewer rows), the last partial panel is
 * stored through a small buffer, and a last group of fewer than 4 k never reads past a row.
 */
#pragma once
#include "wt_act.h"
#include "wt_base.h"
#include "wt_threads.h"

#define WT_GEMM_NR 16 /* columns per packed panel: must equal passes/pack_weights.py PANEL */
#define WT_GEMM_MR 2
#define WT_GEMM_MC_FLOATS 65536 /* a row block of A holds at most this many floats (256 KB: half of L2) */
#define WT_OPAQUE(x) __asm__("" : "+r"(x))

/* p[0 .. n) for 0 < n < 4, zeros after. */
WT_INLINE v128_t wt_gemm_tail4(const float* p, int n) {
    return wasm_f32x4_make(p[0], n > 1 ? p[1] : 0.0f, n > 2 ? p[2] : 0.0f, 0.0f);
}

/* o[0 .. n) = act(o[0 .. n)), n <= 16. Not inlined: the activation's registers would spill the tile loop. */
__attribute__((noinline)) static void wt_gemm_act_row(float* o, int n, int act) {
    float t[WT_GEMM_NR] = {0};
    for (int c = 0; c < n; c++) t[c] = o[c];
    for (int c = 0; c < n; c += 4) wasm_v128_store(t + c, wt_act_apply(wasm_v128_load(t + c), act));
    for (int c = 0; c < n; c++) o[c] = t[c];
}

/* One k step (lane l of the A vectors) for the first R rows. */
#define WT_GEMM_STEP(l)                                                                                  \
    {                                                                                                    \
        v128_t w[4];                                                                                     \
        for (int v = 0; v < 4; v++) w[v] = wasm_v128_load(b + 16 * (l) + 4 * v);                         \
        for (int r = 0; r < R; r++) {                                                                    \
            v128_t s = wasm_i32x4_shuffle(x[r], x[r], l, l, l, l);                                       \
            for (int v = 0; v < 4; v++) c[r][v] = WT_MADD(c[r][v], s, w[v]);      \
        }                                                                                                \
    }

/* o[r][0 .. nc) = act(bias + a[r] . panel) for r < R (R = 1 or 2, a constant after inlining, so
 * the arrays below live in registers). lda, ldo: row strides of a and o; bias: 16 floats. */
WT_INLINE void wt_gemm_tile(const int R, const float* a, int lda, const float* b, int K, float* o, int ldo, int nc,
                            const float* bias, int act) {
    const float* ar[WT_GEMM_MR];
    v128_t c[WT_GEMM_MR][4], x[WT_GEMM_MR];
    for (int r = 0; r < R; r++) {
        ar[r] = a + (size_t)r * lda;
        for (int v = 0; v < 4; v++) c[r][v] = wasm_v128_load(bias + 4 * v);
    }
    int n = K;
    while (n > 0) {
        for (int r = 0; r < R; r++) WT_OPAQUE(ar[r]);
        WT_OPAQUE(b);
        for (int r = 0; r < R; r++) x[r] = n >= 4 ? wasm_v128_load(ar[r]) : wt_gemm_tail4(ar[r], n);
        WT_GEMM_STEP(0)
        if (--n == 0) break;
        WT_GEMM_STEP(1)
        if (--n == 0) break;
        WT_GEMM_STEP(2)
        if (--n == 0) break;
        WT_GEMM_STEP(3)
        --n;
        for (int r = 0; r < R; r++) ar[r] += 4;
        b += 64;
    }
    for (int r = 0; r < R; r++) {
        float* orow = o + (size_t)r * ldo;
        if (nc == WT_GEMM_NR) {
            for (int v = 0; v < 4; v++) wasm_v128_store(orow + 4 * v, c[r][v]);
        } else {
            float t[WT_GEMM_NR];
            for (int v = 0; v < 4; v++) wasm_v128_store(t + 4 * v, c[r][v]);
            for (int q = 0; q < nc; q++) orow[q] = t[q];
        }
    }
    if (act) /* on the stored rows, still in L1; after all stores, so no vector is live across a call */
        for (int r = 0; r < R; r++) wt_gemm_act_row(o + (size_t)r * ldo, nc, act);
}

/* Rows [m0, m1) x panels [p0, p1) of one batch entry: row blocks of A sized to stay in L2 while
 * the panels stream past them. */
static void wt_gemm_block(float* O, const float* A, const float* wp, const float* bias, int M, int N, int K,
                          int m0, int m1, int p0, int p1, int act) {
    int mc = WT_MAX(WT_GEMM_MR, WT_MIN(M, WT_GEMM_MC_FLOATS / WT_MAX(K, 1) / WT_GEMM_MR * WT_GEMM_MR));
    for (int mb = m0; mb < m1; mb += mc) {
        int mend = WT_MIN(m1, mb + mc);
        for (int p = p0; p < p1; p++) {
            const float* B = wp + (size_t)p * K * WT_GEMM_NR;
            int j = p * WT_GEMM_NR, nc = WT_MIN(WT_GEMM_NR, N - j);
            float bias16[WT_GEMM_NR] = {0};
            if (bias)
                for (int q = 0; q < nc; q++) bias16[q] = bias[j + q];
            int i = mb;
            for (; i + 2 <= mend; i += 2)
                wt_gemm_tile(2, A + (size_t)i * K, K, B, K, O + (size_t)i * N + j, N, nc, bias16, act);
            if (i < mend)
                wt_gemm_tile(1, A + (size_t)i * K, K, B, K, O + (size_t)i * N + j, N, nc, bias16, act);
        }
    }
}

/* The parallel split (wt_threads.h): chunks are (batch entry, row block, panel group), a function
 * of the shapes only. Panels are split first (every chunk reads all of its rows of A, which stay in
 * L2); when there are fewer panels than chunks wanted, rows too, in even blocks no taller than an
 * L2 row block. */
typedef struct {
    float* out;
    const float* a;
    const float* wp;
    const float* bias;
    int M, N, K, a_bstride, act;
    int pg, rb, chunks_n, chunks_m;
} wt_gemm_job;

WT_KERNEL void wt_gemm_chunk(const void* p, int c) {
    const wt_gemm_job* j = (const wt_gemm_job*)p;
    int per_b = j->chunks_m * j->chunks_n, bt = c / per_b, r = c % per_b;
    int mi = r / j->chunks_n, ni = r % j->chunks_n;
    int panels = (j->N + WT_GEMM_NR - 1) / WT_GEMM_NR;
    int m0 = mi * j->rb, m1 = WT_MIN(j->M, m0 + j->rb);
    int p0 = ni * j->pg, p1 = WT_MIN(panels, p0 + j->pg);
    wt_gemm_block(j->out + (size_t)bt * j->M * j->N, j->a + (size_t)bt * j->a_bstride, j->wp, j->bias, j->M, j->N,
                  j->K, m0, m1, p0, p1, j->act);
}

/* out[b] = act(a[b] @ W + bias) for b < batch; a[b] is M x K at a + b * a_bstride, out[b] is M x N
 * (contiguous), wp is W packed as above, bias (N floats) may be 0, act is a WT_ACT_* code. */
WT_KERNEL void wt_gemm_packed_act_f32(float* out, const float* a, const float* wp, const float* bias, int batch,
                                      int M, int N, int K, int a_bstride, int act) {
    if (batch <= 0 || M <= 0 || N <= 0) return;
    int panels = (N + WT_GEMM_NR - 1) / WT_GEMM_NR;
    int want = WT_MAX(1, wt_chunks_for((int64_t)M * panels, (int64_t)WT_GEMM_NR * 2 * WT_MAX(K, 1)) / batch);
    int mc = WT_MAX(WT_GEMM_MR, WT_MIN(M, WT_GEMM_MC_FLOATS / WT_MAX(K, 1) / WT_GEMM_MR * WT_GEMM_MR));
    wt_gemm_job j = {out, a, wp, bias, M, N, K, a_bstride, act, 1, M, panels, 1};
    if (panels >= want) {
        j.pg = (panels + want - 1) / want;
        j.chunks_n = (panels + j.pg - 1) / j.pg;
    } else {
        int split = (want + panels - 1) / panels;
        j.rb = WT_MIN(mc, ((M + split - 1) / split + 1) & ~1);
        j.chunks_m = (M + j.rb - 1) / j.rb;
    }
    wt_parallel_for(WT_TASK_GEMM, &j, batch * j.chunks_m * j.chunks_n);
}

/* The entry point other kernels and older generated code call: no activation. */
WT_KERNEL void wt_gemm_packed_f32(float* out, const float* a, const float* wp, const float* bias, int batch, int M,
                                  int N, int K, int a_bstride) {
    wt_gemm_packed_act_f32(out, a, wp, bias, batch, M, N, K, a_bstride, WT_ACT_NONE);
}
