/* f32 GEMM against weights pre-packed at compile time (XNNPACK-style panels).
 *
 * Packed layout of a K x N weight matrix: ceil(N/8) panels, each K rows of 8 consecutive columns
 * (zero-padded past N): panel p, row k, lane c  <->  W[k][8p + c]. The 4x8 microkernel then
 * streams one contiguous panel per column block: per k, 4 splats of A (one per row), 2 loads of
 * B, 8 multiply-adds into 8 accumulators. Edge rows use a 1x8 kernel; the last partial panel is
 * stored through a small buffer, so there is no scalar loop over the whole matrix.
 */
#pragma once
#include "wt_base.h"

static inline void wt_store_cols(float* o, v128_t a, v128_t b, int n) {
    if (n == 8) { wasm_v128_store(o, a); wasm_v128_store(o + 4, b); return; }
    float tmp[8];
    wasm_v128_store(tmp, a);
    wasm_v128_store(tmp + 4, b);
    for (int c = 0; c < n; c++) o[c] = tmp[c];
}

WT_KERNEL void wt_gemm_packed_f32(float* out, const float* a, const float* wp, const float* bias, int batch,
                                  int M, int N, int K, int a_bstride) {
    int panels = (N + 7) / 8;
    /* Row blocks of A sized to stay in L2 (~128 KB) while every weight panel streams past them. */
    int mc = WT_MAX(4, WT_MIN(M, (32768 / WT_MAX(K, 1)) & ~3));
    for (int b = 0; b < batch; b++)
    for (int m0 = 0; m0 < M; m0 += mc) {
        int m1 = WT_MIN(M, m0 + mc);
        const float* A = a + (size_t)b * a_bstride;
        float* O = out + (size_t)b * M * N;
        for (int p = 0; p < panels; p++) {
            const float* B = wp + (size_t)p * K * 8;
            int j = p * 8, n = WT_MIN(8, N - j);
            v128_t b0 = wasm_f32x4_splat(0.0f), b1 = b0;
            if (bias) {
                float tb[8] = {0};
                for (int c = 0; c < n; c++) tb[c] = bias[j + c];
                b0 = wasm_v128_load(tb);
                b1 = wasm_v128_load(tb + 4);
            }
            int i = m0;
            for (; i + 4 <= m1; i += 4) {
                const float* a0 = A + (size_t)i * K;
                const float* a1 = a0 + K;
                const float* a2 = a1 + K;
                const float* a3 = a2 + K;
                v128_t c00 = b0, c01 = b1, c10 = b0, c11 = b1, c20 = b0, c21 = b1, c30 = b0, c31 = b1;
                for (int k = 0; k < K; k++) {
                    v128_t w0 = wasm_v128_load(B + (size_t)k * 8);
                    v128_t w1 = wasm_v128_load(B + (size_t)k * 8 + 4);
                    v128_t x0 = wasm_v128_load32_splat(a0 + k);
                    v128_t x1 = wasm_v128_load32_splat(a1 + k);
                    v128_t x2 = wasm_v128_load32_splat(a2 + k);
                    v128_t x3 = wasm_v128_load32_splat(a3 + k);
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
                wt_store_cols(o, c00, c01, n);
                wt_store_cols(o + N, c10, c11, n);
                wt_store_cols(o + 2 * (size_t)N, c20, c21, n);
                wt_store_cols(o + 3 * (size_t)N, c30, c31, n);
            }
            for (; i < m1; i++) {
                const float* a0 = A + (size_t)i * K;
                v128_t c0 = b0, c1 = b1;
                for (int k = 0; k < K; k++) {
                    v128_t x0 = wasm_v128_load32_splat(a0 + k);
                    c0 = wasm_f32x4_add(c0, wasm_f32x4_mul(x0, wasm_v128_load(B + (size_t)k * 8)));
                    c1 = wasm_f32x4_add(c1, wasm_f32x4_mul(x0, wasm_v128_load(B + (size_t)k * 8 + 4)));
                }
                wt_store_cols(O + (size_t)i * N + j, c0, c1, n);
            }
        }
    }
}
