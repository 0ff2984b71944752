/* Fused attention, flash-style: out = softmax(q kᵀ · scale + mask [causal]) v per (batch, head),
 * without the Lq x Lk score matrix.
 *
 * Per (b, h), query rows go in chunks of up to WT_ATT_QC; for each chunk the keys go in tiles of tk.
 * A tile of K is packed transposed (kt[d][j], zero-padded to a multiple of 8 keys) so QKᵀ runs as
 * 4-row x 8-key SIMD128 register tiles. Each row keeps a running max m and sum l (online softmax):
 * a new tile with max m' rescales the row's accumulator by exp(m - m') while p = exp(s - m') · V is
 * added, in one pass over the output row (the output buffer is the accumulator). At the end the row
 * is divided by l. exp is wt_v_expf (wt_vmath.h), the lane-wise twin of wt_expf, so the vector loop
 * and the scalar rescale agree bit for bit. Masked keys (-inf) give p = 0 exactly; a row with no
 * visible key gives NaN like torch.softmax, or 0 with `safe` (torch's scaled_dot_product_attention).
 * causal: key j is visible to query i iff j <= i (top-left aligned, torch's is_causal); key tiles above
 * the diagonal are skipped.
 *
 * Operands are strided views (element strides per batch, head and row; the head dim is contiguous),
 * so q/k/v are read straight from the projection output and out is written in its consumer's layout.
 * Stack: a 32 KB Kᵀ tile plus ~3 KB (the pass only fuses head dims <= 1024).
 * Parallel split (wt_threads.h): one chunk per (batch, head, chunk of WT_ATT_QC query rows), each
 * with its own Kᵀ tile and running max / sum on its thread's stack.
 */
#pragma once
#include "wt_base.h"
#include "wt_vmath.h"
#include "wt_threads.h"

#define WT_ATT_KT_FLOATS 8192 /* packed Kᵀ tile: D x tk floats */
#define WT_ATT_TK_MAX 128     /* keys per tile */
#define WT_ATT_QC 128         /* query rows per chunk (their running max / sum) */

WT_INLINE float wt_att_hmax(v128_t v) { /* NaN-propagating horizontal max */
    v = wasm_f32x4_max(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_f32x4_max(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(v, 0);
}

WT_INLINE float wt_att_hsum(v128_t v) {
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(v, 0);
}

/* One tile of keys [j0, j0 + nk) for NR (4 or 1) consecutive query rows starting at absolute row i.
 * s: NR x WT_ATT_TK_MAX scratch; m, l: the rows' running max and sum. */
WT_INLINE void wt_att_rows(const int NR, const wt_attention_args* a, const float* Q, const float* kt, int tk,
                           const float* V, float* O, const float* M, int i, int j0, int nk, float* s, float* m,
                           float* l) {
    const int D = a->D, Dv = a->Dv, nk8 = (nk + 7) & ~7;
    const v128_t scale = wasm_f32x4_splat(a->scale);
    /* scores: s[r][j] = (Q[r] . K[j0 + j]) * scale */
    for (int j = 0; j < nk8; j += 8) {
        v128_t c[4][2];
        for (int r = 0; r < NR; r++) c[r][0] = c[r][1] = wasm_f32x4_splat(0.0f);
        const float* kp = kt + j;
        for (int d = 0; d < D; d++) {
            v128_t k0 = wasm_v128_load(kp + (size_t)d * tk), k1 = wasm_v128_load(kp + (size_t)d * tk + 4);
            for (int r = 0; r < NR; r++) {
                v128_t x = wasm_v128_load32_splat(Q + (size_t)r * a->q_sl + d);
                c[r][0] = WT_MADD(c[r][0], x, k0);
                c[r][1] = WT_MADD(c[r][1], x, k1);
            }
        }
        for (int r = 0; r < NR; r++) {
            wasm_v128_store(s + r * WT_ATT_TK_MAX + j, wasm_f32x4_mul(c[r][0], scale));
            wasm_v128_store(s + r * WT_ATT_TK_MAX + j + 4, wasm_f32x4_mul(c[r][1], scale));
        }
    }
    /* mask, causal and padding keys, then the online softmax update; alpha rescales the old accumulator */
    float alpha[4];
    for (int r = 0; r < NR; r++) {
        float* sr = s + r * WT_ATT_TK_MAX;
        int row = i + r, visible = nk;
        if (M) {
            const float* mr = M + (size_t)row * a->m_sq + (size_t)j0 * a->m_sk;
            if (a->m_sk == 1) {
                int j = 0;
                for (; j + 4 <= nk; j += 4)
                    wasm_v128_store(sr + j, wasm_f32x4_add(wasm_v128_load(sr + j), wasm_v128_load(mr + j)));
                for (; j < nk; j++) sr[j] += mr[j];
            } else {
                for (int j = 0; j < nk; j++) sr[j] += mr[(size_t)j * a->m_sk];
            }
        }
        if (a->causal && row - j0 + 1 < visible) visible = row - j0 + 1;
        for (int j = visible; j < nk8; j++) sr[j] = -__builtin_inff();
        v128_t vmax = wasm_f32x4_splat(-__builtin_inff());
        for (int j = 0; j < nk8; j += 4) vmax = wasm_f32x4_max(vmax, wasm_v128_load(sr + j));
        float tmax = wt_att_hmax(vmax), mold = m[r];
        float mnew = (tmax > mold || tmax != tmax) ? tmax : mold;
        if (mnew == -__builtin_inff()) { /* nothing visible in this row yet: p = 0, state unchanged */
            for (int j = 0; j < nk8; j++) sr[j] = 0.0f;
            alpha[r] = 1.0f;
            continue;
        }
        v128_t vm = wasm_f32x4_splat(mnew), vs = wasm_f32x4_splat(0.0f);
        for (int j = 0; j < nk8; j += 4) {
            v128_t p = wt_v_expf(wasm_f32x4_sub(wasm_v128_load(sr + j), vm));
            wasm_v128_store(sr + j, p);
            vs = wasm_f32x4_add(vs, p);
        }
        alpha[r] = mold == -__builtin_inff() ? 0.0f : wt_expf(mold - mnew);
        l[r] = l[r] * alpha[r] + wt_att_hsum(vs);
        m[r] = mnew;
    }
    /* O[r] = O[r] * alpha[r] + sum_j p[r][j] V[j0 + j] */
    const float* Vt = V + (size_t)j0 * a->v_sl;
    int d = 0;
    for (; d + 8 <= Dv; d += 8) {
        v128_t c[4][2];
        for (int r = 0; r < NR; r++) {
            v128_t al = wasm_f32x4_splat(alpha[r]);
            c[r][0] = wasm_f32x4_mul(wasm_v128_load(O + (size_t)r * a->o_sl + d), al);
            c[r][1] = wasm_f32x4_mul(wasm_v128_load(O + (size_t)r * a->o_sl + d + 4), al);
        }
        for (int j = 0; j < nk; j++) {
            const float* vp = Vt + (size_t)j * a->v_sl + d;
            v128_t v0 = wasm_v128_load(vp), v1 = wasm_v128_load(vp + 4);
            for (int r = 0; r < NR; r++) {
                v128_t p = wasm_v128_load32_splat(s + r * WT_ATT_TK_MAX + j);
                c[r][0] = WT_MADD(c[r][0], p, v0);
                c[r][1] = WT_MADD(c[r][1], p, v1);
            }
        }
        for (int r = 0; r < NR; r++) {
            wasm_v128_store(O + (size_t)r * a->o_sl + d, c[r][0]);
            wasm_v128_store(O + (size_t)r * a->o_sl + d + 4, c[r][1]);
        }
    }
    for (; d + 4 <= Dv; d += 4) {
        v128_t c[4];
        for (int r = 0; r < NR; r++)
            c[r] = wasm_f32x4_mul(wasm_v128_load(O + (size_t)r * a->o_sl + d), wasm_f32x4_splat(alpha[r]));
        for (int j = 0; j < nk; j++) {
            v128_t v0 = wasm_v128_load(Vt + (size_t)j * a->v_sl + d);
            for (int r = 0; r < NR; r++)
                c[r] = WT_MADD(c[r], wasm_v128_load32_splat(s + r * WT_ATT_TK_MAX + j), v0);
        }
        for (int r = 0; r < NR; r++) wasm_v128_store(O + (size_t)r * a->o_sl + d, c[r]);
    }
    for (; d < Dv; d++) {
        for (int r = 0; r < NR; r++) {
            float acc = O[(size_t)r * a->o_sl + d] * alpha[r];
            for (int j = 0; j < nk; j++) acc += s[r * WT_ATT_TK_MAX + j] * Vt[(size_t)j * a->v_sl + d];
            O[(size_t)r * a->o_sl + d] = acc;
        }
    }
}

typedef struct {
    float* out;
    const float* q;
    const float* k;
    const float* v;
    const float* mask;
    const wt_attention_args* a;
    int tk, qchunks;
} wt_att_job;

/* One (batch, head, chunk of query rows). */
WT_KERNEL void wt_att_chunk(const void* p, int c) {
    const wt_att_job* jb = (const wt_att_job*)p;
    const wt_attention_args* a = jb->a;
    const int D = a->D, Dv = a->Dv, Lq = a->Lq, Lk = a->Lk, tk = jb->tk;
    int bh = c / jb->qchunks, b = bh / a->H, h = bh % a->H, i0 = (c % jb->qchunks) * WT_ATT_QC;
    float kt[WT_ATT_KT_FLOATS];
    float s[4 * WT_ATT_TK_MAX];
    float m[WT_ATT_QC], l[WT_ATT_QC];
    const float* Q = jb->q + (size_t)b * a->q_sb + (size_t)h * a->q_sh;
    const float* K = jb->k + (size_t)b * a->k_sb + (size_t)h * a->k_sh;
    const float* V = jb->v + (size_t)b * a->v_sb + (size_t)h * a->v_sh;
    float* O = jb->out + (size_t)b * a->o_sb + (size_t)h * a->o_sh;
    const float* M = jb->mask ? jb->mask + (size_t)b * a->m_sb + (size_t)h * a->m_sh : 0;
    int nq = Lq - i0 < WT_ATT_QC ? Lq - i0 : WT_ATT_QC;
    for (int r = 0; r < nq; r++) {
        m[r] = -__builtin_inff();
        l[r] = 0.0f;
        float* o = O + (size_t)(i0 + r) * a->o_sl;
        for (int d = 0; d < Dv; d++) o[d] = 0.0f;
    }
    int kend = a->causal && i0 + nq < Lk ? i0 + nq : Lk; /* keys past the chunk's last row */
    for (int j0 = 0; j0 < kend; j0 += tk) {
        int nk = kend - j0 < tk ? kend - j0 : tk, nk8 = (nk + 7) & ~7;
        for (int j = 0; j < nk; j++) {
            const float* kr = K + (size_t)(j0 + j) * a->k_sl;
            for (int d = 0; d < D; d++) kt[(size_t)d * tk + j] = kr[d];
        }
        for (int d = 0; d < D; d++)
            for (int j = nk; j < nk8; j++) kt[(size_t)d * tk + j] = 0.0f;
        int r = a->causal && j0 > i0 ? j0 - i0 : 0; /* rows above the tile's diagonal see nothing */
        for (; r + 4 <= nq; r += 4)
            wt_att_rows(4, a, Q + (size_t)(i0 + r) * a->q_sl, kt, tk, V, O + (size_t)(i0 + r) * a->o_sl, M, i0 + r,
                        j0, nk, s, m + r, l + r);
        for (; r < nq; r++)
            wt_att_rows(1, a, Q + (size_t)(i0 + r) * a->q_sl, kt, tk, V, O + (size_t)(i0 + r) * a->o_sl, M, i0 + r,
                        j0, nk, s, m + r, l + r);
    }
    for (int r = 0; r < nq; r++) {
        float* o = O + (size_t)(i0 + r) * a->o_sl;
        if (m[r] == -__builtin_inff() && Lk > 0) { /* no visible key: torch gives NaN (safe: 0) */
            float fill = a->safe ? 0.0f : __builtin_nanf("");
            for (int d = 0; d < Dv; d++) o[d] = fill;
        } else if (Lk > 0) {
            float inv = 1.0f / l[r];
            for (int d = 0; d < Dv; d++) o[d] *= inv;
        }
    }
}

WT_KERNEL void wt_attention_f32(float* out, const float* q, const float* k, const float* v, const float* mask,
                                const wt_attention_args* a) {
    const int D = a->D;
    int tk = WT_ATT_KT_FLOATS / (D > 0 ? D : 1);
    tk = (tk > WT_ATT_TK_MAX ? WT_ATT_TK_MAX : tk) & ~7;
    if (tk < 8) __builtin_trap(); /* head dim > 1024: the pass never fuses those */
    if (a->B <= 0 || a->H <= 0 || a->Lq <= 0) return;
    wt_att_job jb = {out, q, k, v, mask, a, tk, (a->Lq + WT_ATT_QC - 1) / WT_ATT_QC};
    wt_parallel_for(WT_TASK_ATTENTION, &jb, a->B * a->H * jb.qchunks);
}
