/* Max / average / adaptive-average pooling over NCHW. Semantics follow PyTorch exactly: padding
 * counts toward the divisor when count_include_pad, windows clipped at the edges, NaN propagates
 * through max.
 *
 * wt_pool2d_f32: SIMD128 over output columns (4 at a time) for the "interior" columns, whose window
 * lies inside the row, when the column stride is 1 or 2 (3x3/2 max pool, 2x2/2, 3x3/1, ...); rows
 * outside the image are skipped. Edge columns, larger strides, and every case the vector path does
 * not cover go through the scalar reference loop (wt_pool_point), which handles dilation, ceil_mode
 * windows, count_include_pad and divisor_override. (Global average pooling never reaches this file:
 * torch.export decomposes adaptive_avg_pool2d(x, 1) and x.mean((2, 3)) into a reduce_mean.)
 * Parallel split (wt_threads.h): blocks of whole planes (image x channel), a function of the shapes.
 */
#pragma once
#include "wt_base.h"
#include "wt_threads.h"

WT_INLINE float wt_pool_point(const float* xp, int H, int W, int h0, int w0, int kh, int kw, int ph, int pw,
                              int dh, int dw, int is_max, int count_include_pad, int divisor_override) {
    float acc = is_max ? -__builtin_inff() : 0.0f;
    int cnt = 0;
    for (int i = 0; i < kh; i++) {
        int h = h0 + i * dh;
        if (h < 0 || h >= H) continue;
        for (int j = 0; j < kw; j++) {
            int ww = w0 + j * dw;
            if (ww < 0 || ww >= W) continue;
            float v = xp[(size_t)h * W + ww];
            if (is_max) {
                if (v > acc || v != v) acc = v;
            } else {
                acc += v;
            }
            cnt++;
        }
    }
    if (is_max) return acc;
    int div = cnt;
    if (divisor_override) div = divisor_override;
    else if (count_include_pad) {
        int he = WT_MIN(h0 + kh, H + ph), we = WT_MIN(w0 + kw, W + pw);
        div = (he - h0) * (we - w0);
    }
    return acc / (float)div;
}

/* x[s], x[s+sw], x[s+2sw], x[s+3sw] for sw 1 or 2, never reading past the last of them. */
WT_INLINE v128_t wt_pool_load4(const float* s, int sw) {
    if (sw == 1) return wasm_v128_load(s);
    return wasm_i32x4_shuffle(wasm_v128_load(s), wasm_v128_load(s + 3), 0, 2, 5, 7);
}

static void wt_pool2d_planes(float* out, const float* x, int c_lo, int c_hi, int H, int W, int OH, int OW, int kh,
                             int kw, int sh, int sw, int ph, int pw, int dh, int dw, int is_max, int count_include_pad,
                             int divisor_override) {
    /* interior columns [c0, c1): ow*sw - pw >= 0 and ow*sw - pw + (kw-1)*dw <= W-1 */
    int c0 = WT_MIN(OW, (pw + sw - 1) / sw);
    int span = W - 1 + pw - (kw - 1) * dw;
    int c1 = span < 0 ? 0 : WT_MIN(OW, span / sw + 1);
    if (sw > 2 || c1 < c0) c0 = c1 = 0;
    for (int c = c_lo; c < c_hi; c++) {
        const float* xp = x + (size_t)c * H * W;
        float* op = out + (size_t)c * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * sh - ph;
            float* orow = op + (size_t)oh * OW;
            int ow = 0;
            if (c1 - c0 >= 4) {
                for (; ow < c0; ow++)
                    orow[ow] = wt_pool_point(xp, H, W, h0, ow * sw - pw, kh, kw, ph, pw, dh, dw, is_max,
                                             count_include_pad, divisor_override);
                int rows = 0;
                for (int i = 0; i < kh; i++) rows += (unsigned)(h0 + i * dh) < (unsigned)H;
                int div = divisor_override ? divisor_override
                          : count_include_pad ? (WT_MIN(h0 + kh, H + ph) - h0) * kw
                                              : rows * kw;
                v128_t vdiv = wasm_f32x4_splat((float)div);
                for (; ow + 4 <= c1; ow += 4) {
                    v128_t acc = wasm_f32x4_splat(is_max ? -__builtin_inff() : 0.0f);
                    v128_t nan = wasm_f32x4_splat(0.0f); /* lanes that saw a NaN (max only) */
                    for (int i = 0; i < kh; i++) {
                        int h = h0 + i * dh;
                        if ((unsigned)h >= (unsigned)H) continue;
                        const float* s = xp + (size_t)h * W + ow * sw - pw;
                        for (int j = 0; j < kw; j++, s += dw) {
                            v128_t v = wt_pool_load4(s, sw);
                            if (is_max) {
                                acc = wasm_f32x4_pmax(acc, v);
                                nan = wasm_v128_or(nan, wasm_f32x4_ne(v, v));
                            } else {
                                acc = wasm_f32x4_add(acc, v);
                            }
                        }
                    }
                    if (is_max) acc = wasm_v128_bitselect(wasm_f32x4_splat(__builtin_nanf("")), acc, nan);
                    else acc = wasm_f32x4_div(acc, vdiv);
                    wasm_v128_store(orow + ow, acc);
                }
            }
            for (; ow < OW; ow++)
                orow[ow] = wt_pool_point(xp, H, W, h0, ow * sw - pw, kh, kw, ph, pw, dh, dw, is_max,
                                         count_include_pad, divisor_override);
        }
    }
}

static void wt_adaptive_planes(float* out, const float* x, int c_lo, int c_hi, int H, int W, int OH, int OW) {
    for (int c = c_lo; c < c_hi; c++) {
        const float* xp = x + (size_t)c * H * W;
        for (int i = 0; i < OH; i++) {
            int h0 = (i * H) / OH, h1 = ((i + 1) * H + OH - 1) / OH;
            for (int j = 0; j < OW; j++) {
                int w0 = (j * W) / OW, w1 = ((j + 1) * W + OW - 1) / OW;
                float s = 0.0f;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) s += xp[(size_t)h * W + w];
                out[((size_t)c * OH + i) * OW + j] = s / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

typedef struct {
    float* out;
    const float* x;
    int NC, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, is_max, count_include_pad, divisor_override, per;
} wt_pool_job;

WT_KERNEL void wt_pool_chunk(const void* p, int c) {
    const wt_pool_job* j = (const wt_pool_job*)p;
    wt_pool2d_planes(j->out, j->x, c * j->per, WT_MIN(j->NC, (c + 1) * j->per), j->H, j->W, j->OH, j->OW, j->kh,
                     j->kw, j->sh, j->sw, j->ph, j->pw, j->dh, j->dw, j->is_max, j->count_include_pad,
                     j->divisor_override);
}

WT_KERNEL void wt_adaptive_chunk(const void* p, int c) {
    const wt_pool_job* j = (const wt_pool_job*)p;
    wt_adaptive_planes(j->out, j->x, c * j->per, WT_MIN(j->NC, (c + 1) * j->per), j->H, j->W, j->OH, j->OW);
}

/* Planes per chunk for NC planes of `per_plane` work each. */
WT_INLINE int wt_pool_per(int NC, int64_t per_plane) {
    int n = wt_chunks_for(NC, per_plane);
    return n > 0 ? (NC + n - 1) / n : 1;
}

WT_KERNEL void wt_pool2d_f32(float* out, const float* x, int NC, int H, int W, int OH, int OW, int kh, int kw,
                             int sh, int sw, int ph, int pw, int dh, int dw, int is_max, int count_include_pad,
                             int divisor_override) {
    if (NC <= 0) return;
    wt_pool_job j = {out, x, NC, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, is_max, count_include_pad,
                     divisor_override, wt_pool_per(NC, (int64_t)OH * OW * kh * kw)};
    wt_parallel_for(WT_TASK_POOL, &j, (NC + j.per - 1) / j.per);
}

WT_KERNEL void wt_adaptive_avg_pool2d_f32(float* out, const float* x, int NC, int H, int W, int OH, int OW) {
    if (NC <= 0) return;
    wt_pool_job j = {out, x, NC, H, W, OH, OW};
    j.per = wt_pool_per(NC, (int64_t)H * W + OH * OW);
    wt_parallel_for(WT_TASK_ADAPTIVE_POOL, &j, (NC + j.per - 1) / j.per);
}
