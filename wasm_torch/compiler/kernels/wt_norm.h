/* Softmax, log-softmax and layer norm over one axis of a contiguous tensor viewed as (outer, n, inner).
 * A row (inner == 1, the common case) is processed four elements at a time in SIMD128; leftovers use
 * the scalar twins of the vector math (wt_base.h), which round identically, so results do not depend
 * on position. Softmax over a non-last axis (inner > 1) stays scalar. Parallel split (wt_threads.h):
 * blocks of whole rows (of `outer`), a function of the shapes; a row is never split.
 */
#pragma once
#include "wt_base.h"
#include "wt_vmath.h"
#include "wt_threads.h"

/* Compiled for size even in the -O3 kernel unit: -O3 re-vectorised and unrolled every loop around the
 * inlined exp into 7.2 KB of softmax (2.6 KB like this, same speed) and layer norm into 1.6 KB (1.0 KB,
 * within 5%): SIMD that is written out needs no unrolling (model.wasm bytes from bench/vmath.py). */
#define WT_SMALL __attribute__((minsize))

WT_INLINE float wt_hmax4(v128_t v) {
    float a = WT_MAX(wasm_f32x4_extract_lane(v, 0), wasm_f32x4_extract_lane(v, 1));
    float b = WT_MAX(wasm_f32x4_extract_lane(v, 2), wasm_f32x4_extract_lane(v, 3));
    return WT_MAX(a, b);
}
WT_INLINE float wt_hsum4(v128_t v) {
    return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
           (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

/* One contiguous row. NaN anywhere gives a NaN row (through exp), an all -inf row gives NaN (0/0),
 * both like torch. */
WT_SMALL static void wt_softmax_row(float* op, const float* xp, int n, int log_out) {
    int i = 0;
    v128_t vm = WT_F4(-__builtin_inff());
    for (; i + 4 <= n; i += 4) vm = wasm_f32x4_pmax(vm, wasm_v128_load(xp + i));
    float m = wt_hmax4(vm);
    for (; i < n; i++) m = WT_MAX(m, xp[i]);
    if (m == -__builtin_inff()) m = 0.0f;
    v128_t vmax = wasm_f32x4_splat(m), vs = WT_F4(0.0f);
    for (i = 0; i + 4 <= n; i += 4) {
        v128_t e = wt_v_expf(WT_VSUB(wasm_v128_load(xp + i), vmax));
        if (!log_out) wasm_v128_store(op + i, e);
        vs = WT_VADD(vs, e);
    }
    float s = wt_hsum4(vs);
    for (; i < n; i++) {
        float e = wt_expf(xp[i] - m);
        if (!log_out) op[i] = e;
        s += e;
    }
    if (log_out) {
        float ls = wt_logf(s) + m;
        v128_t vls = wasm_f32x4_splat(ls);
        for (i = 0; i + 4 <= n; i += 4) wasm_v128_store(op + i, WT_VSUB(wasm_v128_load(xp + i), vls));
        for (; i < n; i++) op[i] = xp[i] - ls;
    } else {
        float r = 1.0f / s;
        v128_t vr = wasm_f32x4_splat(r);
        for (i = 0; i + 4 <= n; i += 4) wasm_v128_store(op + i, WT_VMUL(wasm_v128_load(op + i), vr));
        for (; i < n; i++) op[i] *= r;
    }
}

/* One column of a (n, inner) block, element i at xp[i * inner]: the strided case (softmax over a
 * non-last axis, rare), kept scalar and small. */
WT_SMALL static void wt_softmax_col(float* op, const float* xp, int n, int inner, int log_out) {
    float m = -__builtin_inff();
    for (int i = 0; i < n; i++) m = WT_MAX(m, xp[(size_t)i * inner]);
    if (m == -__builtin_inff()) m = 0.0f;
    float s = 0.0f;
    for (int i = 0; i < n; i++) {
        float e = wt_expf(xp[(size_t)i * inner] - m);
        if (!log_out) op[(size_t)i * inner] = e;
        s += e;
    }
    if (log_out) {
        float ls = wt_logf(s) + m;
        for (int i = 0; i < n; i++) op[(size_t)i * inner] = xp[(size_t)i * inner] - ls;
    } else {
        float r = 1.0f / s;
        for (int i = 0; i < n; i++) op[(size_t)i * inner] *= r;
    }
}

typedef struct {
    float* out;
    const float* x;
    const float* w;
    const float* b;
    int outer, n, inner, log_out, rows;
    float eps;
} wt_rows_job;

WT_SMALL WT_KERNEL void wt_softmax_chunk(const void* p, int c) {
    const wt_rows_job* j = (const wt_rows_job*)p;
    int n = j->n, inner = j->inner, o1 = WT_MIN(j->outer, (c + 1) * j->rows);
    for (int o = c * j->rows; o < o1; o++) {
        const float* xp = j->x + (size_t)o * n * inner;
        float* op = j->out + (size_t)o * n * inner;
        if (inner == 1) {
            wt_softmax_row(op, xp, n, j->log_out);
            continue;
        }
        for (int ci = 0; ci < inner; ci++) wt_softmax_col(op + ci, xp + ci, n, inner, j->log_out);
    }
}

/* Rows per chunk for `outer` rows of `per_row` work each. */
WT_INLINE int wt_rows_per_chunk(int outer, int64_t per_row) {
    int n = wt_chunks_for(outer, per_row);
    return n > 0 ? (outer + n - 1) / n : 1;
}

WT_SMALL WT_KERNEL void wt_softmax_f32(float* out, const float* x, int outer, int n, int inner, int log_out) {
    if (outer <= 0) return;
    wt_rows_job j = {out, x, 0, 0, outer, n, inner, log_out, wt_rows_per_chunk(outer, (int64_t)n * inner * 8), 0};
    wt_parallel_for(WT_TASK_SOFTMAX, &j, (outer + j.rows - 1) / j.rows);
}

/* Two passes (mean, then the mean of squared deviations: no cancellation), then
 * y = (x - mean)·rstd·w + b in one sweep. */
WT_SMALL static void wt_layer_norm_rows(float* out, const float* x, const float* w, const float* b, int o0, int o1,
                                        int n, float eps) {
    for (int o = o0; o < o1; o++) {
        const float* xp = x + (size_t)o * n;
        float* op = out + (size_t)o * n;
        int i = 0;
        v128_t acc0 = WT_F4(0.0f), acc1 = WT_F4(0.0f);
        for (; i + 8 <= n; i += 8) {
            acc0 = WT_VADD(acc0, wasm_v128_load(xp + i));
            acc1 = WT_VADD(acc1, wasm_v128_load(xp + i + 4));
        }
        float sum = wt_hsum4(WT_VADD(acc0, acc1));
        for (; i < n; i++) sum += xp[i];
        float mean = sum / (float)n;
        v128_t vmean = wasm_f32x4_splat(mean);
        acc0 = acc1 = WT_F4(0.0f);
        for (i = 0; i + 8 <= n; i += 8) {
            v128_t d0 = WT_VSUB(wasm_v128_load(xp + i), vmean), d1 = WT_VSUB(wasm_v128_load(xp + i + 4), vmean);
            acc0 = WT_VADD(acc0, WT_VMUL(d0, d0));
            acc1 = WT_VADD(acc1, WT_VMUL(d1, d1));
        }
        float var = wt_hsum4(WT_VADD(acc0, acc1));
        for (; i < n; i++) var += (xp[i] - mean) * (xp[i] - mean);
        var /= (float)n;
        float r = 1.0f / __builtin_sqrtf(var + eps);
        v128_t vr = wasm_f32x4_splat(r);
        for (i = 0; i + 4 <= n; i += 4) {
            v128_t y = WT_VMUL(WT_VSUB(wasm_v128_load(xp + i), vmean), vr);
            if (w) y = WT_VMUL(y, wasm_v128_load(w + i));
            if (b) y = WT_VADD(y, wasm_v128_load(b + i));
            wasm_v128_store(op + i, y);
        }
        for (; i < n; i++) {
            float y = (xp[i] - mean) * r;
            if (w) y *= w[i];
            if (b) y += b[i];
            op[i] = y;
        }
    }
}

WT_SMALL WT_KERNEL void wt_layer_norm_chunk(const void* p, int c) {
    const wt_rows_job* j = (const wt_rows_job*)p;
    wt_layer_norm_rows(j->out, j->x, j->w, j->b, c * j->rows, WT_MIN(j->outer, (c + 1) * j->rows), j->n, j->eps);
}

WT_SMALL WT_KERNEL void wt_layer_norm_f32(float* out, const float* x, const float* w, const float* b, int outer, int n,
                                          float eps) {
    if (outer <= 0) return;
    wt_rows_job j = {out, x, w, b, outer, n, 1, 0, wt_rows_per_chunk(outer, (int64_t)n * 8), eps};
    wt_parallel_for(WT_TASK_LAYER_NORM, &j, (outer + j.rows - 1) / j.rows);
}
