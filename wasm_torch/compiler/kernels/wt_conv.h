/* 2-D convolution, NCHW activations, OIHW weights; grouped, strided, padded, dilated; bias and a
 * clamp epilogue (lo/hi: ReLU is [0, inf), ReLU6 [0, 6], none (-inf, inf)).
 *
 * wt_conv2d_f32 is the readable reference: direct loops, used when the weights are not constants.
 *
 * wt_conv2d_packed_f32 is the fast path, an implicit GEMM per image and group:
 *     out[oc][p] = sum_k Wg[oc][k] * col[k][p],   k = (c, kh, kw),  p = (oh, ow)
 * NCHW output makes the weights the left operand. They are packed at compile time
 * (passes/pack_conv.py) into panels of MR = 4 output channels: panel b, row k, lane r <-> Wg[4b + r][k].
 * The im2col matrix is never materialised whole: per block of pixels (as many as keep kc x pixels
 * under WT_CONV_BUDGET floats, i.e. in L2) and of at most WT_CONV_KC rows of k, the block is packed
 * into panels of 8 pixels in `scratch` (a value of the memory plan: arena bytes, live only during
 * the call). A 1x1 stride-1 unpadded conv packs nothing (col is x, read at a row stride of H*W).
 * Each weight panel's rows are splatted to 4 lanes once per block, then a 4 x 8 register tile (8
 * accumulators, 2 + 4 loads and 8 mul + 8 add per k) runs over every pixel panel; it writes NCHW
 * directly and applies bias and clamp in its epilogue. Measured against the other layouts in
 * docs/compiler.md "Convolution".
 *
 * Parallel split (wt_threads.h): chunks are (image, group, pixel block, group of weight panels), a
 * function of the shapes only. Each chunk packs its own pixel block and splats its own weights on
 * its thread's stack (at most WT_CONV_BUDGET + KC * 16 floats), so the `scratch` value of the memory
 * plan is no longer read. Weight panels are split only when there are too few pixel blocks to keep
 * several threads busy (late, small layers); each panel group then packs the block again.
 */
#pragma once
#include "wt_base.h"
#include "wt_threads.h"

#define WT_CONV_MR 4         /* output channels per weight panel (the tile is 4 x 8): = pack_conv.py MR */
#define WT_CONV_KC 512       /* rows of k per block: = pack_conv.py KC */
#define WT_CONV_MIN_PG 32     /* fewest weight panels (4 output channels each) per chunk: see wt_conv2d_packed_f32 */
#define WT_CONV_BUDGET 65536 /* floats of packed input per block (256 KB, half of L2): = pack_conv.py BUDGET */

/* The reference kernel's chunks: blocks of whole output planes (image, output channel). */
typedef struct {
    float* out;
    const float* x;
    const float* w;
    const float* bias;
    int C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups;
    float lo, hi;
    int planes, per;
} wt_conv_ref_job;

WT_KERNEL void wt_conv_ref_chunk(const void* p, int chunk) {
    const wt_conv_ref_job* j = (const wt_conv_ref_job*)p;
    int C = j->C, H = j->H, W = j->W, OC = j->OC, KH = j->KH, KW = j->KW, OH = j->OH, OW = j->OW;
    int sh = j->sh, sw = j->sw, ph = j->ph, pw = j->pw, dh = j->dh, dw = j->dw;
    int cg = C / j->groups, ocg = OC / j->groups;
    int e = WT_MIN(j->planes, (chunk + 1) * j->per);
    for (int plane = chunk * j->per; plane < e; plane++) {
        int n = plane / OC, oc = plane % OC;
        {
            int g = oc / ocg;
            float* op = j->out + ((size_t)n * OC + oc) * OH * OW;
            float b0 = j->bias ? j->bias[oc] : 0.0f;
            for (int i = 0; i < OH * OW; i++) op[i] = b0;
            for (int c = 0; c < cg; c++) {
                const float* xp = j->x + ((size_t)n * C + g * cg + c) * H * W;
                const float* wp = j->w + ((size_t)oc * cg + c) * KH * KW;
                for (int kh = 0; kh < KH; kh++) {
                    for (int kw = 0; kw < KW; kw++) {
                        float wv = wp[kh * KW + kw];
                        /* output columns whose input column is in range: ow in [lo, hi) */
                        int off = kw * dw - pw;
                        int c0 = off >= 0 ? 0 : (-off + sw - 1) / sw;
                        int c1 = WT_MIN(OW, (W - off + sw - 1) / sw);
                        for (int oh = 0; oh < OH; oh++) {
                            int ih = oh * sh - ph + kh * dh;
                            if (ih < 0 || ih >= H) continue;
                            const float* xr = xp + (size_t)ih * W + off;
                            float* orow = op + (size_t)oh * OW;
                            for (int ow = c0; ow < c1; ow++) orow[ow] += wv * xr[ow * sw];
                        }
                    }
                }
            }
            for (int i = 0; i < OH * OW; i++) op[i] = WT_MIN(WT_MAX(op[i], j->lo), j->hi);
        }
    }
}

WT_KERNEL void wt_conv2d_f32(float* out, const float* x, const float* w, const float* bias, int N, int C, int H,
                             int W, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw,
                             int dh, int dw, int groups, float lo, float hi) {
    int planes = N * OC;
    if (planes <= 0) return;
    int n = wt_chunks_for(planes, (int64_t)OH * OW * (C / groups) * KH * KW * 2);
    wt_conv_ref_job j = {out, x, w, bias, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups, lo, hi,
                         planes, (planes + n - 1) / n};
    wt_parallel_for(WT_TASK_CONV_REF, &j, (planes + j.per - 1) / j.per);
}

/* Pack col[k0 .. k0+kc)[p0 .. p0+np) of one image/group into panels: buf[j][kk][0..8), zero past np.
 * 1x1/1 unpadded convs copy x's rows (col is x). Otherwise panels go in groups of up to 32: their
 * lane coordinates are computed once, then for each k = (c, kh, kw) every panel of the group gets
 * its 8 floats: a panel whose 8 pixels lie in one output row copies 8 consecutive (stride 2:
 * alternate) floats, or zeros when the tap's row is padding; other panels are checked lane by lane. */
static void wt_conv_pack(float* buf, const float* x, int H, int W, int KH, int KW, int OW, int sh, int sw, int ph,
                         int pw, int dh, int dw, int k0, int kc, int p0, int np) {
    const v128_t zero = wasm_f32x4_splat(0.0f);
    if (KH == 1 && KW == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0) {
        for (int j = 0; 8 * j < np; j++) {
            float* dst = buf + (size_t)j * kc * 8;
            int q = p0 + 8 * j, nl = WT_MIN(8, np - 8 * j);
            const float* s = x + (size_t)k0 * H * W + q;
            for (int kk = 0; kk < kc; kk++, dst += 8, s += (size_t)H * W) {
                if (nl == 8) {
                    wasm_v128_store(dst, wasm_v128_load(s));
                    wasm_v128_store(dst + 4, wasm_v128_load(s + 4));
                } else {
                    for (int l = 0; l < 8; l++) dst[l] = l < nl ? s[l] : 0.0f;
                }
            }
        }
        return;
    }
    int panels = (np + 7) / 8;
    for (int j0 = 0; j0 < panels; j0 += 32) {
        int nj = WT_MIN(32, panels - j0);
        int ih[32][8], iw[32][8], row[32]; /* row[t]: the panel's 8 pixels are in one output row */
        for (int t = 0; t < nj; t++) {
            int q = p0 + 8 * (j0 + t), nl = WT_MIN(8, np - 8 * (j0 + t));
            int oh0 = q / OW, ow0 = q - oh0 * OW;
            row[t] = nl == 8 && ow0 + 8 <= OW;
            for (int l = 0; l < 8; l++) { /* lanes past np get a row that is never inside the image */
                int oh = oh0 + (ow0 + l) / OW, ow = (ow0 + l) % OW;
                ih[t][l] = l < nl ? oh * sh - ph : -(1 << 29);
                iw[t][l] = ow * sw - pw;
            }
        }
        int c = k0 / (KH * KW), kh = (k0 / KW) % KH, kw = k0 % KW;
        for (int kk = 0; kk < kc; kk++) {
            const float* xc = x + (size_t)c * H * W;
            int dy = kh * dh, dx = kw * dw;
            float* dst = buf + ((size_t)j0 * kc + kk) * 8;
            for (int t = 0; t < nj; t++, dst += (size_t)kc * 8) {
                int y = ih[t][0] + dy, x0 = iw[t][0] + dx;
                if (row[t] && (unsigned)y >= (unsigned)H) {
                    wasm_v128_store(dst, zero);
                    wasm_v128_store(dst + 4, zero);
                } else if (row[t] && x0 >= 0 && x0 + 7 * sw < W && sw <= 2) {
                    const float* s = xc + (size_t)y * W + x0;
                    if (sw == 1) {
                        wasm_v128_store(dst, wasm_v128_load(s));
                        wasm_v128_store(dst + 4, wasm_v128_load(s + 4));
                    } else { /* stride 2: s[0, 2, .., 14], never reading past s[14] */
                        v128_t a = wasm_v128_load(s), b = wasm_v128_load(s + 4);
                        v128_t c2 = wasm_v128_load(s + 8), d = wasm_v128_load(s + 11);
                        wasm_v128_store(dst, wasm_i32x4_shuffle(a, b, 0, 2, 4, 6));
                        wasm_v128_store(dst + 4, wasm_i32x4_shuffle(c2, d, 0, 2, 5, 7));
                    }
                } else {
                    for (int l = 0; l < 8; l++) {
                        int yy = ih[t][l] + dy, xx = iw[t][l] + dx;
                        dst[l] = ((unsigned)yy < (unsigned)H && (unsigned)xx < (unsigned)W) ? xc[(size_t)yy * W + xx]
                                                                                           : 0.0f;
                    }
                }
            }
            if (++kw == KW) {
                kw = 0;
                if (++kh == KH) { kh = 0; c++; }
            }
        }
    }
}

/* The weight panel rows k0 .. k0+kc, each weight repeated in 4 lanes: as[kk][r][0..4) = A[kk][r].
 * Done once per panel and block and reused by every pixel panel of the block, so the tile's inner
 * loop has plain loads instead of splats (wasm's load32_splat costs 3 x86 instructions in
 * Cranelift, a lane shuffle one FP-pipe uop per use). */
WT_INLINE void wt_conv_splat(float* as, const float* A, int kc) {
    for (int i = 0; i < kc * WT_CONV_MR; i++) wasm_v128_store(as + 4 * i, wasm_v128_load32_splat(A + i));
}

/* An empty asm makes a pointer opaque once per 4 k, so clang keeps it as a base with constant offsets
 * folded into the loads (Cranelift then folds them into x86 addressing), as in wt_gemm_packed.h. */
#define WT_CONV_OPAQUE(x) __asm__("" : "+r"(x))
/* One k step of the MR x 8 tile: 2 loads of 8 pixels, MR loads of splatted weights, 8 mul + 8 add. */
#define WT_CONV_STEP(l)                                                                                   \
    {                                                                                                     \
        v128_t b0 = wasm_v128_load(B + ldb * (l)), b1 = wasm_v128_load(B + ldb * (l) + 4);               \
        v128_t a0 = wasm_v128_load(as + 16 * (l)), a1 = wasm_v128_load(as + 16 * (l) + 4);               \
        v128_t a2 = wasm_v128_load(as + 16 * (l) + 8), a3 = wasm_v128_load(as + 16 * (l) + 12);          \
        c00 = WT_MADD(c00, a0, b0); c01 = WT_MADD(c01, a0, b1); \
        c10 = WT_MADD(c10, a1, b0); c11 = WT_MADD(c11, a1, b1); \
        c20 = WT_MADD(c20, a2, b0); c21 = WT_MADD(c21, a2, b1); \
        c30 = WT_MADD(c30, a3, b0); c31 = WT_MADD(c31, a3, b1); \
    }

/* C[r][0..nr) for r < mr (row stride ldc) from the rows in c (2 vectors per row), clamped when last. */
WT_INLINE void wt_conv_store(float* C, int ldc, int mr, int nr, v128_t* c, int last, v128_t lo, v128_t hi) {
    float tmp[8];
    for (int r = 0; r < mr; r++) {
        v128_t v0 = c[2 * r], v1 = c[2 * r + 1];
        if (last) { /* pmax/pmin keep a NaN from the sum (first operand), like torch's relu / clamp */
            v0 = wasm_f32x4_pmin(wasm_f32x4_pmax(v0, lo), hi);
            v1 = wasm_f32x4_pmin(wasm_f32x4_pmax(v1, lo), hi);
        }
        float* o = C + (size_t)r * ldc;
        if (nr == 8) {
            wasm_v128_store(o, v0);
            wasm_v128_store(o + 4, v1);
        } else {
            wasm_v128_store(tmp, v0);
            wasm_v128_store(tmp + 4, v1);
            for (int l = 0; l < nr; l++) o[l] = tmp[l];
        }
    }
}

/* One 4 x 8 tile over kc rows of k: C[r][0..nr) for r < mr (row stride ldc). first: start from the
 * bias, else from C (an earlier k block); last: apply the clamp. as: splatted weight rows (4 vectors
 * per k); B: 8 pixels per k, at stride ldb (8 in a packed panel, H*W when read straight from x). */
WT_INLINE void wt_conv_tile(float* C, int ldc, int mr, int nr, const float* as, const float* B, int ldb, int kc,
                            int first, int last, const float* bias, v128_t lo, v128_t hi) {
    v128_t c[8];
    float tmp[8];
    for (int r = 0; r < WT_CONV_MR; r++) {
        if (first) {
            c[2 * r] = c[2 * r + 1] = wasm_f32x4_splat(bias && r < mr ? bias[r] : 0.0f);
        } else if (r >= mr) {
            c[2 * r] = c[2 * r + 1] = wasm_f32x4_splat(0.0f);
        } else if (nr == 8) {
            c[2 * r] = wasm_v128_load(C + (size_t)r * ldc);
            c[2 * r + 1] = wasm_v128_load(C + (size_t)r * ldc + 4);
        } else {
            for (int l = 0; l < 8; l++) tmp[l] = l < nr ? C[(size_t)r * ldc + l] : 0.0f;
            c[2 * r] = wasm_v128_load(tmp);
            c[2 * r + 1] = wasm_v128_load(tmp + 4);
        }
    }
    v128_t c00 = c[0], c01 = c[1], c10 = c[2], c11 = c[3], c20 = c[4], c21 = c[5], c30 = c[6], c31 = c[7];
    int n = kc;
    while (n > 0) { /* an exit test after every step keeps each step's loads in their own block */
        WT_CONV_OPAQUE(as);
        WT_CONV_OPAQUE(B);
        WT_CONV_STEP(0)
        if (--n == 0) break;
        WT_CONV_STEP(1)
        if (--n == 0) break;
        WT_CONV_STEP(2)
        if (--n == 0) break;
        WT_CONV_STEP(3)
        --n;
        as += 64;
        B += 4 * ldb;
    }
    c[0] = c00, c[1] = c01, c[2] = c10, c[3] = c11, c[4] = c20, c[5] = c21, c[6] = c30, c[7] = c31;
    wt_conv_store(C, ldc, mr, nr, c, last, lo, hi);
}

/* Pixels per block: all of them if kc rows of them fit the budget, else as many as fit (>= 64). */
WT_INLINE int wt_conv_block_pixels(int kc, int P) {
    int all = (P + 7) & ~7;
    return (size_t)kc * all <= WT_CONV_BUDGET ? all : WT_MAX(64, (WT_CONV_BUDGET / kc) & ~7);
}

typedef struct {
    float* out;
    const float* x;
    const float* wp;
    const float* bias;
    int C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups;
    float lo, hi;
    int nc, pblocks, pg, pgroups;
} wt_conv_job;

WT_KERNEL void wt_conv_chunk(const void* p, int c) {
    const wt_conv_job* jb = (const wt_conv_job*)p;
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
    const float* wg = jb->wp + (size_t)g * panels * K * WT_CONV_MR;
    const float* bg = jb->bias ? jb->bias + (size_t)g * ocg : 0;
    int p0 = pb * jb->nc, np = WT_MIN(jb->nc, P - p0);
    int full = flat ? np / 8 : 0; /* panels read straight from x; the rest are packed */
    for (int k0 = 0; k0 < K; k0 += WT_CONV_KC) {
        int kc = WT_MIN(WT_CONV_KC, K - k0);
        if ((size_t)kc * ((np - 8 * full + 7) & ~7) > WT_CONV_BUDGET) __builtin_trap();
        if (8 * full < np)
            wt_conv_pack(bpack, xg, H, W, KH, KW, jb->OW, jb->sh, jb->sw, jb->ph, jb->pw, jb->dh, jb->dw, k0, kc,
                         p0 + 8 * full, np - 8 * full);
        for (int b = b0; b < b1; b++) {
            wt_conv_splat(splat, wg + ((size_t)b * K + k0) * WT_CONV_MR, kc);
            int mr = WT_MIN(WT_CONV_MR, ocg - b * WT_CONV_MR);
            float* Cb = og + (size_t)b * WT_CONV_MR * P + p0;
            const float* bb = bg ? bg + b * WT_CONV_MR : 0;
            int first = k0 == 0, last = k0 + kc == K;
            for (int j = 0; j < full; j++)
                wt_conv_tile(Cb + 8 * j, P, mr, 8, splat, xg + (size_t)k0 * P + p0 + 8 * j, P, kc, first, last, bb,
                             vlo, vhi);
            for (int j = full; 8 * j < np; j++)
                wt_conv_tile(Cb + 8 * j, P, mr, WT_MIN(8, np - 8 * j), splat, bpack + (size_t)(j - full) * kc * 8, 8,
                             kc, first, last, bb, vlo, vhi);
        }
    }
}

/* out = clamp(conv(x, W) + bias, lo, hi) for N images; wp: W packed by passes/pack_conv.py.
 * scratch / scratch_len (the memory plan's value) are kept in the signature but unused: every
 * chunk packs on its own stack (see the top of this file). */
WT_KERNEL void wt_conv2d_packed_f32(float* out, const float* x, const float* wp, const float* bias, float* scratch,
                                    int scratch_len, int N, int C, int H, int W, int OC, int KH, int KW, int OH,
                                    int OW, int sh, int sw, int ph, int pw, int dh, int dw, int groups, float lo,
                                    float hi) {
    (void)scratch, (void)scratch_len;
    int cg = C / groups, ocg = OC / groups, K = cg * KH * KW, P = OH * OW;
    if (N <= 0 || P <= 0 || ocg <= 0) return;
    int panels = (ocg + WT_CONV_MR - 1) / WT_CONV_MR;
    int nc = wt_conv_block_pixels(WT_MIN(K, WT_CONV_KC), P);
    int pblocks = (P + nc - 1) / nc, base = N * groups * pblocks;
    int want = wt_chunks_for((int64_t)base * panels, (int64_t)WT_MIN(nc, P) * WT_CONV_MR * K * 2);
    /* Each panel group packs the pixel block again: keep >= WT_CONV_MIN_PG panels per group, so the
     * packing stays a small part of a chunk (at 2 panels per group ResNet-18's 7x7 layers re-packed
     * their 4608-row blocks 64 times, and the whole model ran 2.4x slower on one thread; 16 panels
     * still cost 8 %, 32 none measurable: 142 vs 137 ms before the split, 95 ms on 2 threads). */
    int pgroups = base >= want ? 1 : WT_MIN(WT_MAX(1, panels / WT_CONV_MIN_PG), (want + base - 1) / base);
    int pg = (panels + pgroups - 1) / pgroups;
    pgroups = (panels + pg - 1) / pg;
    wt_conv_job jb = {out, x, wp, bias, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups, lo, hi,
                      nc, pblocks, pg, pgroups};
    wt_parallel_for(WT_TASK_CONV, &jb, base * pgroups);
}
