/* f32 matrix multiply: out[b] = a[b] @ w[b] (+ bias), row-major, SIMD128.
 *
 * Correctness-first kernel: each block of 4 output rows keeps a strip of 8 columns in registers
 * (8 v128 accumulators), splatting one A element per row per k; edge rows/columns fall back to
 * narrower strips rather than scalar loops over the whole matrix.
 */
#pragma once
#include "wt_base.h"

WT_KERNEL void wt_matmul_f32(float* out, const float* a, const float* w, const float* bias, int batch, int M,
                          int N, int K, int a_bstride, int w_bstride) {
    for (int b = 0; b < batch; b++) {
        const float* A = a + (size_t)b * a_bstride;
        const float* W = w + (size_t)b * w_bstride;
        float* O = out + (size_t)b * M * N;
        int i = 0;
        for (; i + 4 <= M; i += 4) {
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
                    c00 = wasm_f32x4_add(c00, wasm_f32x4_mul(x0, w0));
                    c01 = wasm_f32x4_add(c01, wasm_f32x4_mul(x0, w1));
                    c10 = wasm_f32x4_add(c10, wasm_f32x4_mul(x1, w0));
                    c11 = wasm_f32x4_add(c11, wasm_f32x4_mul(x1, w1));
                    c20 = wasm_f32x4_add(c20, wasm_f32x4_mul(x2, w0));
                    c21 = wasm_f32x4_add(c21, wasm_f32x4_mul(x2, w1));
                    c30 = wasm_f32x4_add(c30, wasm_f32x4_mul(x3, w0));
                    c31 = wasm_f32x4_add(c31, wasm_f32x4_mul(x3, w1));
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
        for (; i < M; i++) { /* row edge: 1 row, vectorised over columns */
            const float* a0 = A + (size_t)i * K;
            float* o = O + (size_t)i * N;
            int j = 0;
            for (; j + 4 <= N; j += 4) {
                v128_t c = bias ? wasm_v128_load(bias + j) : wasm_f32x4_splat(0.0f);
                for (int k = 0; k < K; k++)
                    c = wasm_f32x4_add(c, wasm_f32x4_mul(wasm_f32x4_splat(a0[k]), wasm_v128_load(W + (size_t)k * N + j)));
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
