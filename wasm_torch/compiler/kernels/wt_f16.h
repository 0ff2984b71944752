/* fp16 weights, f32 compute: the packed GEMM and the packed convolution with their weight panels
 * stored as IEEE halves (passes/quantize.py, format "fp16"), converted to floats inside the kernel.
 *
 * GEMM: the panel layout is wt_gemm_packed.h's (ceil(N/16) panels of K x 16). Per row block of A
 * (sized for L2 as there) and panel, blocks of WT_F16_KB rows of the panel are converted into a
 * buffer on the chunk's stack, then every row pair of the block runs the same 2 x 16 register tile
 * as the f32 kernel over them, starting from the bias (first block) or from the partial sums it
 * stored (later blocks). Conversion is paid once per row block, not per row: for MiniLM's 128-row
 * GEMMs it is under 1% of the multiply-adds. Every output is the same sequence of f32 multiply-adds
 * as wt_gemm_packed_act_f32 over the weights rounded to half, so the two agree bit for bit.
 *
 * Convolution: wt_conv.h's implicit GEMM, whose chunks already splat each weight panel's rows into
 * a stack buffer once per block; here that splat converts halves. Everything else is wt_conv.h's.
 */
#pragma once
#include "wt_act.h"
#include "wt_base.h"
#include "wt_conv.h"
#include "wt_gemm_packed.h"
#include "wt_quant.h"
#include "wt_threads.h"

#define WT_F16_KB 256 /* panel rows converted at once: 256 x 16 floats = 16 KB of stack */

/* dst[0 .. 16n) = the n panel rows at src, as floats. */
WT_INLINE void wt_f16_panel(float* dst, const uint16_t* src, int n) {
    for (int i = 0; i < 16 * n; i += 8) {
        v128_t h = wasm_v128_load(src + i);
        wasm_v128_store(dst + i, wt_f16x4_to_f32(wasm_u32x4_extend_low_u16x8(h)));
        wasm_v128_store(dst + i + 4, wt_f16x4_to_f32(wasm_u32x4_extend_high_u16x8(h)));
    }
}

/* One k step (lane l of the A vectors) for the first R rows: wt_gemm_packed.h's WT_GEMM_STEP. */
#define WT_F16_STEP(l)                                                                                   \
    {                                                                                                    \
        v128_t w[4];                                                                                     \
        for (int v = 0; v < 4; v++) w[v] = wasm_v128_load(b + 16 * (l) + 4 * v);                         \
        for (int r = 0; r < R; r++) {                                                                    \
            v128_t s = wasm_i32x4_shuffle(x[r], x[r], l, l, l, l);                                       \
            for (int v = 0; v < 4; v++) c[r][v] = WT_MADD(c[r][v], s, w[v]);                             \
        }                                                                                                \
    }

/* o[r][0 .. nc) (+)= a[r] . panel rows [0, n) for r < R: from the bias when first, else from o. */
WT_INLINE void wt_f16_tile(const int R, const float* a, int lda, const float* b, int n, float* o, int ldo, int nc,
                           const float* bias16, int first) {
    const float* ar[WT_GEMM_MR];
    v128_t c[WT_GEMM_MR][4], x[WT_GEMM_MR];
    float t[WT_GEMM_NR];
    for (int r = 0; r < R; r++) {
        ar[r] = a + (size_t)r * lda;
        const float* src = bias16;
        if (!first) {
            for (int q = 0; q < WT_GEMM_NR; q++) t[q] = q < nc ? o[(size_t)r * ldo + q] : 0.0f;
            src = t;
        }
        for (int v = 0; v < 4; v++) c[r][v] = wasm_v128_load(src + 4 * v);
    }
    while (n > 0) {
        for (int r = 0; r < R; r++) WT_OPAQUE(ar[r]);
        WT_OPAQUE(b);
        for (int r = 0; r < R; r++) x[r] = n >= 4 ? wasm_v128_load(ar[r]) : wt_gemm_tail4(ar[r], n);
        WT_F16_STEP(0)
        if (--n == 0) break;
        WT_F16_STEP(1)
        if (--n == 0) break;
        WT_F16_STEP(2)
        if (--n == 0) break;
        WT_F16_STEP(3)
        --n;
        for (int r = 0; r < R; r++) ar[r] += 4;
        b += 64;
    }
    for (int r = 0; r < R; r++) {
        float* orow = o + (size_t)r * ldo;
        if (nc == WT_GEMM_NR) {
            for (int v = 0; v < 4; v++) wasm_v128_store(orow + 4 * v, c[r][v]);
        } else {
            for (int v = 0; v < 4; v++) wasm_v128_store(t + 4 * v, c[r][v]);
            for (int q = 0; q < nc; q++) orow[q] = t[q];
        }
    }
}

typedef struct {
    float* out;
    const float* a;
    const uint16_t* wp;
    const float* bias;
    int M, N, K, act;
    int pg, rb, chunks_n, chunks_m;
} wt_gemm_f16_job;

WT_KERNEL void wt_gemm_f16_chunk(const void* p, int c) {
    const wt_gemm_f16_job* j = (const wt_gemm_f16_job*)p;
    int M = j->M, N = j->N, K = j->K;
    int mi = c / j->chunks_n, ni = c % j->chunks_n;
    int panels = (N + WT_GEMM_NR - 1) / WT_GEMM_NR;
    int m0 = mi * j->rb, m1 = WT_MIN(M, m0 + j->rb);
    int p0 = ni * j->pg, p1 = WT_MIN(panels, p0 + j->pg);
    int mc = WT_MAX(WT_GEMM_MR, WT_MIN(M, WT_GEMM_MC_FLOATS / WT_MAX(K, 1) / WT_GEMM_MR * WT_GEMM_MR));
    float buf[WT_F16_KB * WT_GEMM_NR];
    for (int mb = m0; mb < m1; mb += mc) {
        int mend = WT_MIN(m1, mb + mc);
        for (int pn = p0; pn < p1; pn++) {
            const uint16_t* B = j->wp + (size_t)pn * K * WT_GEMM_NR;
            int col = pn * WT_GEMM_NR, nc = WT_MIN(WT_GEMM_NR, N - col);
            float bias16[WT_GEMM_NR] = {0};
            if (j->bias)
                for (int q = 0; q < nc; q++) bias16[q] = j->bias[col + q];
            for (int k0 = 0; k0 < K || k0 == 0; k0 += WT_F16_KB) {
                int kb = WT_MIN(WT_F16_KB, K - k0);
                wt_f16_panel(buf, B + (size_t)k0 * WT_GEMM_NR, kb);
                int i = mb;
                for (; i + 2 <= mend; i += 2)
                    wt_f16_tile(2, j->a + (size_t)i * K + k0, K, buf, kb, j->out + (size_t)i * N + col, N, nc, bias16,
                                k0 == 0);
                if (i < mend)
                    wt_f16_tile(1, j->a + (size_t)i * K + k0, K, buf, kb, j->out + (size_t)i * N + col, N, nc, bias16,
                                k0 == 0);
                if (kb <= 0) break;
            }
            if (j->act)
                for (int i = mb; i < mend; i++) wt_gemm_act_row(j->out + (size_t)i * N + col, nc, j->act);
        }
    }
}

/* The same split as wt_gemm_packed_act_f32: panels first, rows when there are fewer panels than chunks. */
WT_KERNEL void wt_gemm_f16_f32(float* out, const float* a, const uint16_t* wp, const float* bias, int M, int N, int K,
                               int act) {
    if (M <= 0 || N <= 0) return;
    int panels = (N + WT_GEMM_NR - 1) / WT_GEMM_NR;
    int want = WT_MAX(1, wt_chunks_for((int64_t)M * panels, (int64_t)WT_GEMM_NR * 2 * WT_MAX(K, 1)));
    int mc = WT_MAX(WT_GEMM_MR, WT_MIN(M, WT_GEMM_MC_FLOATS / WT_MAX(K, 1) / WT_GEMM_MR * WT_GEMM_MR));
    wt_gemm_f16_job j = {out, a, wp, bias, M, N, K, act, 1, M, panels, 1};
    if (panels >= want) {
        j.pg = (panels + want - 1) / want;
        j.chunks_n = (panels + j.pg - 1) / j.pg;
    } else {
        int split = (want + panels - 1) / panels;
        j.rb = WT_MIN(mc, ((M + split - 1) / split + 1) & ~1);
        j.chunks_m = (M + j.rb - 1) / j.rb;
    }
    wt_parallel_for(WT_TASK_GEMM_F16, &j, j.chunks_m * j.chunks_n);
}

/* ---- convolution ---------------------------------------------------------------------------------- */
/* wt_conv_splat over halves: as[kk][r][0..4) = float(A[kk][r]). */
WT_INLINE void wt_conv_splat_f16(float* as, const uint16_t* A, int kc) {
    for (int i = 0; i < kc * WT_CONV_MR; i++) wasm_v128_store(as + 4 * i, wasm_f32x4_splat(wt_f16_to_f32(A[i])));
}

typedef struct {
    float* out;
    const float* x;
    const uint16_t* wp;
    const float* bias;
    int C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups;
    float lo, hi;
    int nc, pblocks, pg, pgroups;
} wt_conv_f16_job;

/* wt_conv_chunk (wt_conv.h) with the weight splat converting halves. */
WT_KERNEL void wt_conv_f16_chunk(const void* p, int c) {
    const wt_conv_f16_job* jb = (const wt_conv_f16_job*)p;
    int KH = jb->KH, KW = jb->KW, groups = jb->groups, H = jb->H, W = jb->W;
    int cg = jb->C / groups, ocg = jb->OC / groups, K = cg * KH * KW, P = jb->OH * jb->OW;
    int panels = (ocg + WT_CONV_MR - 1) / WT_CONV_MR;
    int pgi = c % jb->pgroups, rest = c / jb->pgroups;
    int pb = rest % jb->pblocks, ng = rest / jb->pblocks, g = ng % groups, n = ng / groups;
    int b0 = pgi * jb->pg, b1 = WT_MIN(panels, b0 + jb->pg);
    int flat = KH == 1 && KW == 1 && jb->sh == 1 && jb->sw == 1 && jb->ph == 0 && jb->pw == 0;
    v128_t vlo = wasm_f32x4_splat(jb->lo), vhi = wasm_f32x4_splat(jb->hi);
    float splat[WT_CONV_KC * WT_CONV_MR * 4];
    float bpack[WT_CONV_BUDGET];
    const float* xg = jb->x + ((size_t)n * jb->C + (size_t)g * cg) * H * W;
    float* og = jb->out + ((size_t)n * jb->OC + (size_t)g * ocg) * P;
    const uint16_t* wg = jb->wp + (size_t)g * panels * K * WT_CONV_MR;
    const float* bg = jb->bias ? jb->bias + (size_t)g * ocg : 0;
    int p0 = pb * jb->nc, np = WT_MIN(jb->nc, P - p0);
    int full = flat ? np / 8 : 0;
    for (int k0 = 0; k0 < K; k0 += WT_CONV_KC) {
        int kc = WT_MIN(WT_CONV_KC, K - k0);
        if ((size_t)kc * ((np - 8 * full + 7) & ~7) > WT_CONV_BUDGET) __builtin_trap();
        if (8 * full < np)
            wt_conv_pack(bpack, xg, H, W, KH, KW, jb->OW, jb->sh, jb->sw, jb->ph, jb->pw, jb->dh, jb->dw, k0, kc,
                         p0 + 8 * full, np - 8 * full);
        for (int b = b0; b < b1; b++) {
            wt_conv_splat_f16(splat, wg + ((size_t)b * K + k0) * WT_CONV_MR, kc);
            int mr = WT_MIN(WT_CONV_MR, ocg - b * WT_CONV_MR);
            float* Cb = og + (size_t)b * WT_CONV_MR * P + p0;
            const float* bb = bg ? bg + b * WT_CONV_MR : 0;
            int first = k0 == 0, last = k0 + kc == K;
            for (int jj = 0; jj < full; jj++)
                wt_conv_tile(Cb + 8 * jj, P, mr, 8, splat, xg + (size_t)k0 * P + p0 + 8 * jj, P, kc, first, last, bb,
                             vlo, vhi);
            for (int jj = full; 8 * jj < np; jj++)
                wt_conv_tile(Cb + 8 * jj, P, mr, WT_MIN(8, np - 8 * jj), splat, bpack + (size_t)(jj - full) * kc * 8,
                             8, kc, first, last, bb, vlo, vhi);
        }
    }
}

WT_KERNEL void wt_conv2d_f16_f32(float* out, const float* x, const uint16_t* wp, const float* bias, int N, int C,
                                 int H, int W, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw,
                                 int dh, int dw, int groups, float lo, float hi) {
    int cg = C / groups, ocg = OC / groups, K = cg * KH * KW, P = OH * OW;
    if (N <= 0 || P <= 0 || ocg <= 0) return;
    int panels = (ocg + WT_CONV_MR - 1) / WT_CONV_MR;
    int nc = wt_conv_block_pixels(WT_MIN(K, WT_CONV_KC), P);
    int pblocks = (P + nc - 1) / nc, base = N * groups * pblocks;
    int want = wt_chunks_for((int64_t)base * panels, (int64_t)WT_MIN(nc, P) * WT_CONV_MR * K * 2);
    /* >= WT_CONV_MIN_PG panels per chunk: each panel group packs the pixel block again (wt_conv.h) */
    int pgroups = base >= want ? 1 : WT_MIN(WT_MAX(1, panels / WT_CONV_MIN_PG), (want + base - 1) / base);
    int pg = (panels + pgroups - 1) / pgroups;
    pgroups = (panels + pg - 1) / pg;
    wt_conv_f16_job jb = {out, x, wp, bias, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups, lo, hi,
                          nc, pblocks, pg, pgroups};
    wt_parallel_for(WT_TASK_CONV_F16, &jb, base * pgroups);
}
