/* int8 GEMM with dynamic per-row activation quantization (passes/quantize.py, format "int8";
 * docs/quantization.md).
 *
 * wt_q8_rows: each row of A (one token) gets its own asymmetric 8-bit quantization over a range that
 * includes 0:
 *     mn = min(0, min a), mx = max(0, max a), range = mx - mn
 *     inv = 255 / range, scale = range / 255, zp = clamp(rint(-mn * inv), 0, 255)
 *     x = clamp(rint(a * inv) + zp, 0, 255)          (rint: round half to even, f32x4.nearest)
 * and stores the signed codes c = x - 128 as int16, each group of 4 written twice ([c0..c3, c0..c3]),
 * plus scale, zp and the row's sum of c. A row of zeros gets scale 0; a row holding inf or NaN gets
 * scale NaN, so its outputs are NaN.
 *
 * wt_gemm_q8_f32: weights are symmetric per output column, 8-bit (q in [-127, 127], stored as is:
 * wbias 0) or 7-bit (q in [-63, 63], stored as q + 64: wbias 64, for relaxed SIMD), packed in panels
 * of 16 columns x groups of 4 k: panel p, k group g, column group j (4 columns), column c, k lane t
 * at byte ((p * G + g) * 4 + j) * 16 + 4c + t  <->  W[4g + t][16p + 4j + c] + wbias.
 *   SIMD128 (every build, and 8-bit weights in relaxed builds): the panel widened to int16 (minus
 *     wbias) once per row block; one plain load gives a group's doubled codes, i32x4.dot_i16x8_s sums
 *     k pairs of 2 columns; 2 rows x 8 columns, the pairs folded by one shuffle-add at the end.
 *   relaxed SIMD, 7-bit weights: i32x4.relaxed_dot_i8x16_i7x16_add_s(codes, q + 64, acc) with the
 *     codes narrowed to 4 signed bytes repeated in every lane; the +64 is taken back with the row's
 *     sum of c. The second operand is 7-bit, so every engine computes the same; 2 x 16, 8 accumulators.
 * Both sum sum(c * q) exactly in int32 (|c * q| <= 128 * 127: K up to 132,000), so every build and
 * every thread count gives the same bits. Epilogue per column group, in this order (WT_FP_EXACT):
 *     y = float(sum(c * q) + (128 - zp) * wsum[n]) * (wscale[n] * scale) + bias[n], then the activation
 * (sum(c * q) + (128 - zp) * wsum = sum((x - zp) * q): the zero point taken out exactly).
 * Parallel split (wt_threads.h) as wt_gemm_packed.h: (row block, group of panels), shapes only.
 */
#pragma once
#include "wt_act.h"
#include "wt_base.h"
#include "wt_gemm_packed.h"
#include "wt_quant.h"
#include "wt_threads.h"

#define WT_Q8_NR 16    /* columns per panel: = ops/quant_format.py Q8_PANEL */
#define WT_Q8_WBIAS 64 /* 7-bit weights are stored + 64: = ops/quant_format.py W7_BIAS */

/* ---- activation ranges and codes ----------------------------------------------------------------- */
/* The scale, 1/scale and zero point of a range [mn, mx] that contains 0 (see the top of the file). */
WT_INLINE void wt_q8_params(float mn, float mx, float* scale, float* inv, int32_t* zp) {
    WT_FP_EXACT
    float range = mx - mn;
    if (range > 0.0f && range < wt_bits_to_f(0x7f800000u)) {
        *inv = 255.0f / range;
        *scale = range / 255.0f;
        float z = __builtin_roundevenf(-mn * *inv);
        *zp = z < 0.0f ? 0 : (z > 255.0f ? 255 : (int32_t)z);
    } else {
        *inv = 0.0f;
        *scale = range == 0.0f ? 0.0f : wt_bits_to_f(0x7fc00000u);
        *zp = 0;
    }
}

/* 4 floats -> 4 int32 rint(x * inv) + zp (not yet clamped). */
WT_INLINE v128_t wt_q8_round4(const float* x, v128_t inv, v128_t zp) {
    WT_FP_EXACT
    return wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x), inv))), zp);
}

/* 16 floats -> 16 codes clamp(rint(x * inv) + zp, 0, 255) as unsigned bytes. */
WT_INLINE v128_t wt_q8_quant16(const float* x, v128_t inv, v128_t zp) {
    v128_t lo = wasm_i16x8_narrow_i32x4(wt_q8_round4(x, inv, zp), wt_q8_round4(x + 4, inv, zp));
    v128_t hi = wasm_i16x8_narrow_i32x4(wt_q8_round4(x + 8, inv, zp), wt_q8_round4(x + 12, inv, zp));
    return wasm_u8x16_narrow_i16x8(lo, hi);
}

/* n floats (0 <= n < 16) padded with zeros to 16. */
WT_INLINE void wt_q8_tail16(float* t, const float* x, int n) {
    for (int i = 0; i < 16; i++) t[i] = i < n ? x[i] : 0.0f;
}

/* Min and max of x[0 .. n) together with 0, NaN-propagating (f32x4.min / max). */
WT_INLINE void wt_q8_range(const float* x, int n, float* mn, float* mx) {
    v128_t lo = wasm_f32x4_splat(0.0f), hi = lo;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        v128_t v = wasm_v128_load(x + i);
        lo = wasm_f32x4_min(lo, v);
        hi = wasm_f32x4_max(hi, v);
    }
    if (i < n) {
        v128_t v = wt_gemm_tail4(x + i, n - i); /* zeros past n: 0 is in the range anyway */
        lo = wasm_f32x4_min(lo, v);
        hi = wasm_f32x4_max(hi, v);
    }
    lo = wasm_f32x4_min(lo, wasm_i32x4_shuffle(lo, lo, 2, 3, 0, 1));
    lo = wasm_f32x4_min(lo, wasm_i32x4_shuffle(lo, lo, 1, 0, 3, 2));
    hi = wasm_f32x4_max(hi, wasm_i32x4_shuffle(hi, hi, 2, 3, 0, 1));
    hi = wasm_f32x4_max(hi, wasm_i32x4_shuffle(hi, hi, 1, 0, 3, 2));
    *mn = wasm_f32x4_extract_lane(lo, 0);
    *mx = wasm_f32x4_extract_lane(hi, 0);
}

/* Codes of x[0 .. n) as unsigned bytes into q[0 .. npad): zeros past n. */
WT_INLINE void wt_q8_quant_row(uint8_t* q, const float* x, int n, int npad, float inv, int32_t zp) {
    v128_t vi = wasm_f32x4_splat(inv), vz = wasm_i32x4_splat(zp);
    int i = 0;
    for (; i + 16 <= n; i += 16) wasm_v128_store(q + i, wt_q8_quant16(x + i, vi, vz));
    if (i < n) {
        float t[16];
        uint8_t b[16];
        wt_q8_tail16(t, x + i, n - i);
        wasm_v128_store(b, wt_q8_quant16(t, vi, vz));
        for (int k = 0; k < n - i; k++) q[i + k] = b[k];
        i = n;
    }
    for (; i < npad; i++) q[i] = 0;
}

/* 8 floats -> 8 signed codes c = clamp(rint(x * inv) + zp, 0, 255) - 128 as int16. */
WT_INLINE v128_t wt_q8_codes8(const float* x, v128_t inv, v128_t zp128) {
    v128_t h = wasm_i16x8_narrow_i32x4(wt_q8_round4(x, inv, zp128), wt_q8_round4(x + 4, inv, zp128));
    return wasm_i16x8_min(wasm_i16x8_max(h, wasm_i16x8_splat(-128)), wasm_i16x8_splat(127));
}

/* A GEMM row's signed codes into q (each group of 4 twice: 2 * npad int16, zeros past n); returns
 * their sum. */
WT_INLINE int32_t wt_q8_quant_row16(int16_t* q, const float* x, int n, int npad, float inv, int32_t zp) {
    v128_t vi = wasm_f32x4_splat(inv), vz = wasm_i32x4_splat(zp - 128), sum = wasm_i32x4_splat(0);
    for (int i = 0; i < npad; i += 8) {
        float t[16];
        const float* src = x + i;
        if (i + 8 > n) {
            wt_q8_tail16(t, x + i, WT_MAX(0, n - i));
            src = t;
        }
        v128_t h = wt_q8_codes8(src, vi, vz);
        if (i + 8 > n) { /* codes past n are 0 (their weights are 0 too) */
            int16_t b[8];
            wasm_v128_store(b, h);
            for (int k = WT_MAX(0, n - i); k < 8; k++) b[k] = 0;
            h = wasm_v128_load(b);
        }
        sum = wasm_i32x4_add(sum, wasm_i32x4_extadd_pairwise_i16x8(h));
        wasm_v128_store(q + 2 * i, wasm_i64x2_shuffle(h, h, 0, 0));
        if (i + 4 < npad) wasm_v128_store(q + 2 * i + 8, wasm_i64x2_shuffle(h, h, 1, 1));
    }
    sum = wasm_i32x4_add(sum, wasm_i32x4_shuffle(sum, sum, 2, 3, 0, 1));
    sum = wasm_i32x4_add(sum, wasm_i32x4_shuffle(sum, sum, 1, 0, 3, 2));
    return wasm_i32x4_extract_lane(sum, 0);
}

typedef struct {
    int16_t* q;
    float* scale;
    int32_t* zp;
    const float* a;
    int M, K, Kp, per;
} wt_q8_rows_job;

WT_KERNEL void wt_q8_rows_chunk(const void* p, int c) {
    const wt_q8_rows_job* j = (const wt_q8_rows_job*)p;
    int end = WT_MIN(j->M, (c + 1) * j->per);
    for (int r = c * j->per; r < end; r++) {
        const float* x = j->a + (size_t)r * j->K;
        float mn, mx, inv;
        int32_t zp;
        wt_q8_range(x, j->K, &mn, &mx);
        wt_q8_params(mn, mx, &j->scale[r], &inv, &zp);
        j->zp[2 * r] = zp;
        j->zp[2 * r + 1] = wt_q8_quant_row16(j->q + (size_t)r * 2 * j->Kp, x, j->K, j->Kp, inv, zp);
    }
}

/* zp[2r] = the row's zero point, zp[2r + 1] = the sum of its codes c. */
WT_KERNEL void wt_q8_rows(int16_t* q, float* scale, int32_t* zp, const float* a, int M, int K, int Kp) {
    if (M <= 0) return;
    int n = wt_chunks_for(M, (int64_t)K * 4);
    wt_q8_rows_job j = {q, scale, zp, a, M, K, Kp, (M + n - 1) / n};
    wt_parallel_for(WT_TASK_Q8_ROWS, &j, (M + j.per - 1) / j.per);
}

/* ---- the GEMM ------------------------------------------------------------------------------------- */
#define WT_Q8_OPAQUE(x) __asm__("" : "+r"(x))

/* The epilogue of one row and 4 columns: s holds the 4 exact sums of c * q; off = 128 - zp. */
WT_INLINE v128_t wt_q8_dequant(v128_t s, int32_t off, float scale, const float* wscale, const int32_t* wsum,
                               const float* bias4) {
    WT_FP_EXACT
    v128_t corr = wasm_i32x4_add(s, wasm_i32x4_mul(wasm_v128_load(wsum), wasm_i32x4_splat(off)));
    v128_t sc = wasm_f32x4_mul(wasm_v128_load(wscale), wasm_f32x4_splat(scale));
    return wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_convert_i32x4(corr), sc), wasm_v128_load(bias4));
}

/* Store 16 columns of a row (nc of them valid). */
WT_INLINE void wt_q8_store16(float* orow, const v128_t* ys, int nc) {
    if (nc >= WT_Q8_NR) {
        for (int v = 0; v < 4; v++) wasm_v128_store(orow + 4 * v, ys[v]);
    } else {
        float t[WT_Q8_NR];
        for (int v = 0; v < 4; v++) wasm_v128_store(t + 4 * v, ys[v]);
        for (int q = 0; q < nc; q++) orow[q] = t[q];
    }
}

/* One k group for the first R rows: 4 weight vectors (columns (0, 1) .. (6, 7) x k 0..3), each row's
 * [c0..c3, c0..c3], 4 dot_i16x8 + 4 add per row. */
#define WT_Q8_STEP(o)                                                                                    \
    {                                                                                                    \
        v128_t w0 = wasm_v128_load(b + 64 * (o)), w1 = wasm_v128_load(b + 64 * (o) + 8);                 \
        v128_t w2 = wasm_v128_load(b + 64 * (o) + 16), w3 = wasm_v128_load(b + 64 * (o) + 24);           \
        for (int r = 0; r < R; r++) {                                                                    \
            v128_t x = wasm_v128_load(ar[r] + 8 * (o));                                                  \
            s[r][0] = wasm_i32x4_add(s[r][0], wasm_i32x4_dot_i16x8(w0, x));                              \
            s[r][1] = wasm_i32x4_add(s[r][1], wasm_i32x4_dot_i16x8(w1, x));                              \
            s[r][2] = wasm_i32x4_add(s[r][2], wasm_i32x4_dot_i16x8(w2, x));                              \
            s[r][3] = wasm_i32x4_add(s[r][3], wasm_i32x4_dot_i16x8(w3, x));                              \
        }                                                                                                \
    }
/* SIMD128: R (1 or 2) rows x 8 columns over G groups of 4 k, weights widened: per group, the 4
 * vectors at b are columns (0, 1), (2, 3), (4, 5), (6, 7) x k 0..3 (64 int16 between groups: the
 * panel's other 8 columns sit in between); i32x4.dot_i16x8_s gives [c0 (k0,k1), c0 (k2,k3), c1 (k0,k1),
 * c1 (k2,k3)], folded by a shuffle-add at the end. 8 accumulators, 4 weights, 1 code vector; two
 * groups per loop turn with an exit test after each (as wt_gemm_packed.h: each step's loads stay in
 * their own block for Cranelift). It runs at this CPU's i32x4.dot_i16x8_s throughput
 * (docs/quantization.md). */
WT_INLINE void wt_q8_tile(const int R, const int16_t* a, int lda, const int16_t* b, int G, v128_t acc[2][4]) {
    const int16_t* ar[2] = {a, a + lda};
    v128_t s[2][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 4; v++) s[r][v] = wasm_i32x4_splat(0);
    int n = G;
    while (n > 0) {
        for (int r = 0; r < R; r++) WT_Q8_OPAQUE(ar[r]);
        WT_Q8_OPAQUE(b);
        WT_Q8_STEP(0)
        if (--n == 0) break;
        WT_Q8_STEP(1)
        --n;
        b += 128;
        for (int r = 0; r < R; r++) ar[r] += 16;
    }
    for (int r = 0; r < R; r++) /* fold the pairs: [c0, c1, c2, c3] per column group */
        for (int v = 0; v < 2; v++)
            acc[r][v] = wasm_i32x4_add(wasm_i32x4_shuffle(s[r][2 * v], s[r][2 * v + 1], 0, 2, 4, 6),
                                       wasm_i32x4_shuffle(s[r][2 * v], s[r][2 * v + 1], 1, 3, 5, 7));
}

/* G groups of a panel (64 bytes each) widened to int16 with wbias taken back: q itself. */
WT_INLINE void wt_q8_widen(int16_t* dst, const int8_t* src, int G, int wbias) {
    v128_t bias = wasm_i16x8_splat(wbias);
    for (int i = 0; i < 64 * G; i += 16) {
        v128_t v = wasm_v128_load(src + i);
        wasm_v128_store(dst + i, wasm_i16x8_sub(wasm_i16x8_extend_low_i8x16(v), bias));
        wasm_v128_store(dst + i + 8, wasm_i16x8_sub(wasm_i16x8_extend_high_i8x16(v), bias));
    }
}

#ifdef __wasm_relaxed_simd__
/* Relaxed SIMD, 7-bit weights: R (1 or 2) rows x 16 columns over G groups of 4 k: a group's codes
 * narrowed to 4 signed bytes in every lane, dotted with 4 columns x 4 k of weights + 64 per relaxed
 * dot: sum(c * (q + 64)). lda: int16 per row. */
WT_INLINE void wt_q8_tile_dot(const int R, const int16_t* a, int lda, const int8_t* b, int G, v128_t acc[2][4]) {
    const int16_t* ar[2] = {a, a + lda};
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 4; v++) acc[r][v] = wasm_i32x4_splat(0);
    for (int g = 0; g < G; g++) {
        WT_Q8_OPAQUE(b);
        v128_t w0 = wasm_v128_load(b), w1 = wasm_v128_load(b + 16), w2 = wasm_v128_load(b + 32),
               w3 = wasm_v128_load(b + 48);
        for (int r = 0; r < R; r++) {
            v128_t h = wasm_v128_load(ar[r] + 8 * g);
            v128_t x = wasm_i8x16_narrow_i16x8(h, h);
            acc[r][0] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x, w0, acc[r][0]);
            acc[r][1] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x, w1, acc[r][1]);
            acc[r][2] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x, w2, acc[r][2]);
            acc[r][3] = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x, w3, acc[r][3]);
        }
        b += 64;
    }
}
#define WT_Q8_DOT 1
#else
#define WT_Q8_DOT 0
#endif

#define WT_Q8_KG 1024 /* k groups per block (the widened panel block: 1024 x 128 bytes = 128 KB of stack) */
#define WT_Q8_MB 64   /* rows per block: their int32 partial sums (64 x 16) stay on the stack */

/* Rows [mb, mend) (<= WT_Q8_MB) x one panel: exact sums of c * q into part. */
static void wt_q8_panel_sums(int32_t part[WT_Q8_MB][WT_Q8_NR], const int16_t* Q, const int8_t* panel, int Kp,
                             int mb, int mend, int wbias, int16_t* wide) {
    int G = Kp / 4;
    for (int g0 = 0; g0 < G || g0 == 0; g0 += WT_Q8_KG) {
        int gb = WT_MIN(WT_Q8_KG, G - g0);
        int dot = WT_Q8_DOT && wbias == WT_Q8_WBIAS; /* the relaxed dot takes 7-bit weights only */
        if (!dot) wt_q8_widen(wide, panel + (size_t)g0 * 64, gb, wbias);
        for (int h = 0; h < WT_Q8_NR; h += dot ? 16 : 8) {
            v128_t acc[2][4];
            for (int i = mb; i < mend; i += 2) {
                int R = i + 2 <= mend ? 2 : 1;
                const int16_t* A = Q + (size_t)i * 2 * Kp + 8 * g0;
#if WT_Q8_DOT
                if (dot) {
                    if (R == 2)
                        wt_q8_tile_dot(2, A, 2 * Kp, panel + (size_t)g0 * 64, gb, acc);
                    else
                        wt_q8_tile_dot(1, A, 2 * Kp, panel + (size_t)g0 * 64, gb, acc);
                } else
#endif
                if (R == 2) /* columns h .. h + 7: widened vectors h / 2 .. h / 2 + 3 */
                    wt_q8_tile(2, A, 2 * Kp, wide + 4 * h, gb, acc);
                else
                    wt_q8_tile(1, A, 2 * Kp, wide + 4 * h, gb, acc);
                for (int r = 0; r < R; r++)
                    for (int v = 0; v < (dot ? 4 : 2); v++) {
                        int32_t* dst = part[i + r - mb] + h + 4 * v;
                        wasm_v128_store(dst, g0 ? wasm_i32x4_add(wasm_v128_load(dst), acc[r][v]) : acc[r][v]);
                    }
            }
        }
        if (gb <= 0) break;
    }
}

/* Rows [m0, m1) x panels [p0, p1): sums, epilogue, activation. K is cut into blocks of WT_Q8_KG
 * groups whose exact partial sums add up in a small stack buffer. */
static void wt_gemm_q8_block(float* O, const int16_t* Q, const float* scale, const int32_t* zp, const int8_t* wp,
                             const float* wscale, const int32_t* wsum, const float* bias, int N, int Kp, int m0,
                             int m1, int p0, int p1, int act, int wbias) {
    int G = Kp / 4;
    int16_t wide[WT_Q8_KG * 64];
    int dot = WT_Q8_DOT && wbias == WT_Q8_WBIAS;
    for (int p = p0; p < p1; p++) {
        const int8_t* panel = wp + (size_t)p * G * 64;
        int col = p * WT_Q8_NR, nc = WT_MIN(WT_Q8_NR, N - col);
        float b16[WT_Q8_NR] = {0};
        if (bias)
            for (int q = 0; q < nc; q++) b16[q] = bias[col + q];
        for (int mb = m0; mb < m1; mb += WT_Q8_MB) {
            int mend = WT_MIN(m1, mb + WT_Q8_MB);
            int32_t part[WT_Q8_MB][WT_Q8_NR];
            wt_q8_panel_sums(part, Q, panel, Kp, mb, mend, wbias, wide);
            for (int i = mb; i < mend; i++) {
                v128_t ys[4];
                v128_t fix = wasm_i32x4_splat(dot ? -WT_Q8_WBIAS * zp[2 * i + 1] : 0); /* the +64: 64 * sum(c) */
                for (int v = 0; v < 4; v++)
                    ys[v] = wt_q8_dequant(wasm_i32x4_add(wasm_v128_load(part[i - mb] + 4 * v), fix), 128 - zp[2 * i],
                                          scale[i], wscale + col + 4 * v, wsum + col + 4 * v, b16 + 4 * v);
                float* orow = O + (size_t)i * N + col;
                wt_q8_store16(orow, ys, nc);
                if (act) wt_gemm_act_row(orow, nc, act);
            }
        }
    }
}

typedef struct {
    float* out;
    const int16_t* q;
    const float* scale;
    const int32_t* zp;
    const int8_t* wp;
    const float* wscale;
    const int32_t* wsum;
    const float* bias;
    int M, N, Kp, act, wbias;
    int pg, rb, chunks_n;
} wt_gemm_q8_job;

WT_KERNEL void wt_gemm_q8_chunk(const void* p, int c) {
    const wt_gemm_q8_job* j = (const wt_gemm_q8_job*)p;
    int panels = (j->N + WT_Q8_NR - 1) / WT_Q8_NR;
    int mi = c / j->chunks_n, ni = c % j->chunks_n;
    int m0 = mi * j->rb, m1 = WT_MIN(j->M, m0 + j->rb);
    int p0 = ni * j->pg, p1 = WT_MIN(panels, p0 + j->pg);
    wt_gemm_q8_block(j->out, j->q, j->scale, j->zp, j->wp, j->wscale, j->wsum, j->bias, j->N, j->Kp, m0, m1, p0, p1,
                     j->act, j->wbias);
}

/* out (M x N) = act(dequantized codes . W + bias); q, scale, zp from wt_q8_rows. Chunks are (row
 * block, group of panels), a function of the shapes only: panels first, rows when there are fewer
 * panels than chunks wanted. */
WT_KERNEL void wt_gemm_q8_f32(float* out, const int16_t* q, const float* scale, const int32_t* zp, const int8_t* wp,
                              const float* wscale, const int32_t* wsum, const float* bias, int M, int N, int Kp,
                              int act, int wbias) {
    if (M <= 0 || N <= 0) return;
    int panels = (N + WT_Q8_NR - 1) / WT_Q8_NR;
    int want = WT_MAX(1, wt_chunks_for((int64_t)M * panels, (int64_t)WT_Q8_NR * 2 * WT_MAX(Kp, 1)));
    wt_gemm_q8_job j = {out, q, scale, zp, wp, wscale, wsum, bias, M, N, Kp, act, wbias, panels, M, 1};
    if (panels >= want) {
        j.pg = (panels + want - 1) / want;
        j.chunks_n = (panels + j.pg - 1) / j.pg;
    } else {
        j.pg = 1;
        j.chunks_n = panels;
        int split = (want + panels - 1) / panels;
        j.rb = WT_MAX(2, ((M + split - 1) / split + 1) & ~1);
    }
    int chunks_m = (M + j.rb - 1) / j.rb;
    wt_parallel_for(WT_TASK_GEMM_Q8, &j, chunks_m * j.chunks_n);
}
