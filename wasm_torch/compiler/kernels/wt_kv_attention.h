/* Attention over a KV cache, for text generation (wasm_torch/generate): one call per layer and step.
 *
 *   wt_kv_attention_f32(out, q, k, v, past, kc, vc, args)
 *
 * The T new tokens sit at positions past .. past+T-1. First their keys and values are written into
 * the cache (kc, vc: persistent buffers in linear memory that keep their contents between calls),
 * then every query row attends to the cache causally: the row at position p sees keys 0..p, so
 * prefill (past = 0, T = prompt length) and a decode step (T = 1) are the same call, and nothing
 * past the current length is ever read as a key. A `past` outside [0, C - T] traps (unreachable)
 * before anything is written; the host checks it first (wasm_torch/generate/generator.py).
 *
 * Layouts (element counts; B batch, Hq query heads, Hkv key/value heads, Hq = g·Hkv for grouped-
 * query attention, D / Dv head dims, CS = C rounded up to a multiple of 8):
 *   q [B][T][Hq][D], k [B][T][Hkv][D], v [B][T][Hkv][Dv], out [B][T][Hq][Dv]  (what the projections
 *   read and write without permutes), kc [B][Hkv][D][CS] (keys stored transposed: QKᵀ runs as
 *   4-row x 8-key SIMD128 tiles straight from the cache, no packing), vc [B][Hkv][CS][Dv].
 *
 * Per (batch, kv head), the query rows are the T·g pairs (token t, head of the group), token-major,
 * so a decode step's g heads of one group share every K and V load. Rows go in groups of up to 4
 * over tiles of WT_KV_TK keys with an online softmax (running max m and sum l per row; the output
 * row is the accumulator, rescaled by exp(m - m') when the max grows), exp is wt_v_expf (wt_vmath.h)
 * as in wt_attention.h. Keys above a row's position score -inf and contribute exactly 0; every row
 * sees at least its own key, so no row is empty.
 * Parallel split (wt_threads.h): chunks of up to WT_KV_RC rows of one (batch, kv head); each chunk
 * writes only its own output rows. The cache is written by the caller before the split.
 */
#pragma once
#include "wt_base.h"
#include "wt_kernels.h"
#include "wt_threads.h"
#include "wt_vmath.h"

#define WT_KV_TK 128 /* keys per tile */
#define WT_KV_RC 64  /* query rows per parallel chunk */

WT_INLINE float wt_kv_hmax(v128_t v) { /* NaN-propagating horizontal max */
    v = wasm_f32x4_max(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_f32x4_max(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(v, 0);
}

WT_INLINE float wt_kv_hsum(v128_t v) {
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(v, 0);
}

/* NR (4 or 1) query rows against keys [j0, j0 + nk): scores, mask by position, online softmax update,
 * O[r] = O[r]·alpha[r] + Σ p[r][j]·V[j]. s: NR x WT_KV_TK scratch; m, l: the rows' running max and sum. */
WT_INLINE void wt_kv_rows(const int NR, const float* const* Q, float* const* O, const int* pos, const float* KT,
                          int CS, const float* V, int D, int Dv, float scale, int j0, int nk, float* s, float* m,
                          float* l) {
    const int nk8 = (nk + 7) & ~7;
    const v128_t vscale = wasm_f32x4_splat(scale);
    for (int j = 0; j < nk8; j += 8) { /* keys past nk read cache slots [j0+nk, j0+nk8) < CS: masked below */
        v128_t c[4][2];
        for (int r = 0; r < NR; r++) c[r][0] = c[r][1] = wasm_f32x4_splat(0.0f);
        const float* kp = KT + j0 + j;
        for (int d = 0; d < D; d++) {
            v128_t k0 = wasm_v128_load(kp + (size_t)d * CS), k1 = wasm_v128_load(kp + (size_t)d * CS + 4);
            for (int r = 0; r < NR; r++) {
                v128_t x = wasm_v128_load32_splat(Q[r] + d);
                c[r][0] = WT_MADD(c[r][0], x, k0);
                c[r][1] = WT_MADD(c[r][1], x, k1);
            }
        }
        for (int r = 0; r < NR; r++) {
            wasm_v128_store(s + r * WT_KV_TK + j, wasm_f32x4_mul(c[r][0], vscale));
            wasm_v128_store(s + r * WT_KV_TK + j + 4, wasm_f32x4_mul(c[r][1], vscale));
        }
    }
    float alpha[4];
    for (int r = 0; r < NR; r++) {
        float* sr = s + r * WT_KV_TK;
        int visible = pos[r] - j0 + 1;
        visible = visible < 0 ? 0 : (visible > nk ? nk : visible);
        for (int j = visible; j < nk8; j++) sr[j] = -__builtin_inff();
        if (visible == 0) { /* the whole tile lies after this row's position */
            for (int j = 0; j < nk8; j++) sr[j] = 0.0f;
            alpha[r] = 1.0f;
            continue;
        }
        v128_t vmax = wasm_f32x4_splat(-__builtin_inff());
        for (int j = 0; j < nk8; j += 4) vmax = wasm_f32x4_max(vmax, wasm_v128_load(sr + j));
        float tmax = wt_kv_hmax(vmax), mold = m[r];
        float mnew = (tmax > mold || tmax != tmax) ? tmax : mold;
        v128_t vm = wasm_f32x4_splat(mnew), vs = wasm_f32x4_splat(0.0f);
        for (int j = 0; j < nk8; j += 4) {
            v128_t p = wt_v_expf(wasm_f32x4_sub(wasm_v128_load(sr + j), vm));
            wasm_v128_store(sr + j, p);
            vs = wasm_f32x4_add(vs, p);
        }
        alpha[r] = mold == -__builtin_inff() ? 0.0f : wt_expf(mold - mnew);
        l[r] = l[r] * alpha[r] + wt_kv_hsum(vs);
        m[r] = mnew;
    }
    const float* Vt = V + (size_t)j0 * Dv;
    int d = 0;
    for (; d + 8 <= Dv; d += 8) {
        v128_t c[4][2];
        for (int r = 0; r < NR; r++) {
            v128_t al = wasm_f32x4_splat(alpha[r]);
            c[r][0] = wasm_f32x4_mul(wasm_v128_load(O[r] + d), al);
            c[r][1] = wasm_f32x4_mul(wasm_v128_load(O[r] + d + 4), al);
        }
        for (int j = 0; j < nk; j++) {
            const float* vp = Vt + (size_t)j * Dv + d;
            v128_t v0 = wasm_v128_load(vp), v1 = wasm_v128_load(vp + 4);
            for (int r = 0; r < NR; r++) {
                v128_t p = wasm_v128_load32_splat(s + r * WT_KV_TK + j);
                c[r][0] = WT_MADD(c[r][0], p, v0);
                c[r][1] = WT_MADD(c[r][1], p, v1);
            }
        }
        for (int r = 0; r < NR; r++) {
            wasm_v128_store(O[r] + d, c[r][0]);
            wasm_v128_store(O[r] + d + 4, c[r][1]);
        }
    }
    for (; d + 4 <= Dv; d += 4) {
        v128_t c[4];
        for (int r = 0; r < NR; r++) c[r] = wasm_f32x4_mul(wasm_v128_load(O[r] + d), wasm_f32x4_splat(alpha[r]));
        for (int j = 0; j < nk; j++) {
            v128_t v0 = wasm_v128_load(Vt + (size_t)j * Dv + d);
            for (int r = 0; r < NR; r++) c[r] = WT_MADD(c[r], wasm_v128_load32_splat(s + r * WT_KV_TK + j), v0);
        }
        for (int r = 0; r < NR; r++) wasm_v128_store(O[r] + d, c[r]);
    }
    for (; d < Dv; d++) {
        for (int r = 0; r < NR; r++) {
            float acc = O[r][d] * alpha[r];
            for (int j = 0; j < nk; j++) acc += s[r * WT_KV_TK + j] * Vt[(size_t)j * Dv + d];
            O[r][d] = acc;
        }
    }
}

typedef struct {
    float* out;
    const float* q;
    const float* kc;
    const float* vc;
    const wt_kv_attention_args* a;
    int past, rows, rchunks; /* rows = T·g per (batch, kv head), in chunks of WT_KV_RC */
} wt_kv_job;

/* One chunk: rows [r0, r0 + WT_KV_RC) of one (batch, kv head). */
WT_KERNEL void wt_kv_att_chunk(const void* p, int c) {
    const wt_kv_job* jb = (const wt_kv_job*)p;
    const wt_kv_attention_args* a = jb->a;
    const int g = a->Hq / a->Hkv, D = a->D, Dv = a->Dv, CS = a->CS;
    const int bk = c / jb->rchunks, b = bk / a->Hkv, kh = bk % a->Hkv;
    const int r0 = (c % jb->rchunks) * WT_KV_RC, nr = jb->rows - r0 < WT_KV_RC ? jb->rows - r0 : WT_KV_RC;
    const float* KT = jb->kc + (size_t)bk * D * CS;
    const float* V = jb->vc + (size_t)bk * CS * Dv;
    float s[4 * WT_KV_TK], m[WT_KV_RC], l[WT_KV_RC];
    const float* Q[WT_KV_RC];
    float* O[WT_KV_RC];
    int pos[WT_KV_RC];
    for (int r = 0; r < nr; r++) {
        int t = (r0 + r) / g, h = kh * g + (r0 + r) % g;
        size_t row = ((size_t)b * a->T + t) * a->Hq + h;
        Q[r] = jb->q + row * D;
        O[r] = jb->out + row * Dv;
        pos[r] = jb->past + t;
        m[r] = -__builtin_inff();
        l[r] = 0.0f;
        for (int d = 0; d < Dv; d++) O[r][d] = 0.0f;
    }
    for (int r = 0; r < nr;) {
        const int NR = nr - r >= 4 ? 4 : 1; /* groups of 4 rows, then the tail one at a time */
        const int last = pos[r + NR - 1];   /* positions grow with the row index */
        for (int j0 = 0; j0 <= last; j0 += WT_KV_TK) {
            int nk = last + 1 - j0 < WT_KV_TK ? last + 1 - j0 : WT_KV_TK;
            if (NR == 4)
                wt_kv_rows(4, Q + r, O + r, pos + r, KT, CS, V, D, Dv, a->scale, j0, nk, s, m + r, l + r);
            else
                wt_kv_rows(1, Q + r, O + r, pos + r, KT, CS, V, D, Dv, a->scale, j0, nk, s, m + r, l + r);
        }
        r += NR;
    }
    for (int k = 0; k < nr; k++) {
        float inv = 1.0f / l[k];
        for (int d = 0; d < Dv; d++) O[k][d] *= inv;
    }
}

WT_KERNEL void wt_kv_attention_f32(float* out, const float* q, const float* k, const float* v, const int64_t* past,
                                   float* kc, float* vc, const wt_kv_attention_args* a) {
    const int64_t p = past[0];
    if (p < 0 || p > (int64_t)a->C - a->T || a->C > a->CS || a->Hkv <= 0 || a->Hq % a->Hkv) __builtin_trap();
    if (a->B <= 0 || a->T <= 0) return;
    const int D = a->D, Dv = a->Dv, CS = a->CS;
    for (int b = 0; b < a->B; b++) /* the new keys (transposed) and values into the cache */
        for (int t = 0; t < a->T; t++)
            for (int h = 0; h < a->Hkv; h++) {
                size_t src = ((size_t)b * a->T + t) * a->Hkv + h;
                float* kt = kc + ((size_t)b * a->Hkv + h) * D * CS + p + t;
                const float* kr = k + src * D;
                for (int d = 0; d < D; d++) kt[(size_t)d * CS] = kr[d];
                float* vr = vc + (((size_t)b * a->Hkv + h) * CS + p + t) * Dv;
                const float* vs = v + src * Dv;
                for (int d = 0; d < Dv; d++) vr[d] = vs[d];
            }
    const int rows = a->T * (a->Hq / a->Hkv);
    wt_kv_job jb = {out, q, kc, vc, a, (int)p, rows, (rows + WT_KV_RC - 1) / WT_KV_RC};
    wt_parallel_for(WT_TASK_KV_ATTENTION, &jb, a->B * a->Hkv * jb.rchunks);
}
