/* f32 matrix multiply: out[b] = a[b] @ w[b] (+ bias), row-major, SIMD128.
 *
 * Correctness-first kernel: each block of 4 output rows keeps a strip of 8 columns in registers
 * (8 v128 accumulators), splatting one A element per row per k; edge rows/columns fall back to
 * narrower strips rather than scalar loops over the whole matrix. Parallel split (wt_threads.h):
 * chunks of (batch entry, block of rows), the blocks multiples of 4 rows, a function of the shapes.
 */
#pragma once
#include "wt_base.h"
#include "wt_threads.h"

typedef struct {
    float* out;
    const float* a;
    const float* w;
    const float* bias;
    int M, N, K, a_bstride, w_bstride, rb, chunks_m;
} wt_matmul_job;

WT_KERNEL void wt_matmul_chunk(const void* p, int c) {
    const wt_matmul_job* jb = (const wt_matmul_job*)p;
    const float* bias = jb->bias;
    int b = c / jb->chunks_m, M = jb->M, N = jb->N, K = jb->K;
    int r0 = (c % jb->chunks_m) * jb->rb, r1 = WT_MIN(M, r0 + jb->rb);
    {
        const float* A = jb->a + (size_t)b * jb->a_bstride;
        const float* W = jb->w + (size_t)b * jb->w_bstride;
        float* O = jb->out + (size_t)b * M * N;
        int i = r0;
        for (; i + 4 <= r1; i += 4) {
            int j = 0;
            for (; j + 8 <= N; j += 8) {
                v128_t c00, c01, c10, c11, c20, c21, c30, c31;
                if (bias) {
                    c00 = c10 = c20 = c30 = wasm_v128_load(bias + j);
                    c01 = c11 = c21 = c31 = wasm_v128_load(bias + j + 4);
                } else {
                    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = wasm_f32x4_splat(0.0f);
                }
                const float* a0 = A + (size_t)i * K;
                for (int k = 0; k < K; k++) {
                    v128_t w0 = wasm_v128_load(W + (size_t)k * N + j);
                    v128_t w1 = wasm_v128_load(W + (size_t)k * N + j + 4);
                    v128_t x0 = wasm_f32x4_splat(a0[k]);
                    v128_t x1 = wasm_f32x4_splat(a0[K + k]);
                    v128_t x2 = wasm_f32x4_splat(a0[2 * K + k]);
                    v128_t x3 = wasm_f32x4_splat(a0[3 * K + k]);
                    c00 = WT_MADD(c00, x0, w0);
                    c01 = WT_MADD(c01, x0, w1);
                    c10 = WT_MADD(c10, x1, w0);
                    c11 = WT_MADD(c11, x1, w1);
                    c20 = WT_MADD(c20, x2, w0);
                    c21 = WT_MADD(c21, x2, w1);
                    c30 = WT_MADD(c30, x3, w0);
                    c31 = WT_MADD(c31, x3, w1);
                }
                float* o = O + (size_t)i * N + j;
                wasm_v128_store(o, c00); wasm_v128_store(o + 4, c01);
                wasm_v128_store(o + N, c10); wasm_v128_store(o + N + 4, c11);
                wasm_v128_store(o + 2 * N, c20); wasm_v128_store(o + 2 * N + 4, c21);
                wasm_v128_store(o + 3 * N, c30); wasm_v128_store(o + 3 * N + 4, c31);
            }
            for (; j < N; j++) { /* column edge: 4 rows x 1 column */
                float s0 = bias ? bias[j] : 0.0f, s1 = s0, s2 = s0, s3 = s0;
                const float* a0 = A + (size_t)i * K;
                for (int k = 0; k < K; k++) {
                    float wv = W[(size_t)k * N + j];
                    s0 += a0[k] * wv; s1 += a0[K + k] * wv; s2 += a0[2 * K + k] * wv; s3 += a0[3 * K + k] * wv;
                }
                O[(size_t)i * N + j] = s0; O[(size_t)(i + 1) * N + j] = s1;
                O[(size_t)(i + 2) * N + j] = s2; O[(size_t)(i + 3) * N + j] = s3;
            }
        }
        for (; i < r1; i++) { /* row edge: 1 row, vectorised over columns */
            const float* a0 = A + (size_t)i * K;
            float* o = O + (size_t)i * N;
            int j = 0;
            for (; j + 4 <= N; j += 4) {
                v128_t c = bias ? wasm_v128_load(bias + j) : wasm_f32x4_splat(0.0f);
                for (int k = 0; k < K; k++)
                    c = WT_MADD(c, wasm_f32x4_splat(a0[k]), wasm_v128_load(W + (size_t)k * N + j));
                wasm_v128_store(o + j, c);
            }
            for (; j < N; j++) {
                float s = bias ? bias[j] : 0.0f;
                for (int k = 0; k < K; k++) s += a0[k] * W[(size_t)k * N + j];
                o[j] = s;
            }
        }
    }
}

WT_KERNEL void wt_matmul_f32(float* out, const float* a, const float* w, const float* bias, int batch, int M,
                             int N, int K, int a_bstride, int w_bstride) {
    if (batch <= 0 || M <= 0) return;
    int blocks = (M + 3) / 4;
    int want = WT_MAX(1, wt_chunks_for((int64_t)batch * blocks, (int64_t)4 * N * 2 * WT_MAX(K, 1)) / batch);
    int per = (blocks + want - 1) / want;
    wt_matmul_job j = {out, a, w, bias, M, N, K, a_bstride, w_bstride, 4 * per, (blocks + per - 1) / per};
    wt_parallel_for(WT_TASK_MATMUL, &j, batch * j.chunks_m);
}
