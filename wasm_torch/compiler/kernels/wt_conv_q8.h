/* int8 convolution: the implicit-GEMM conv (any kernel, stride, padding, dilation, groups) and the
 * depthwise conv, with per-image 8-bit activations (dynamic, or static scales calibrated at compile
 * time) and per-output-channel int8 weights (passes/quantize.py; docs/quantization.md).
 *
 * Three calls per conv in the generated code:
 *   wt_q8_minmax_f32   per image, min and max of the input (left out for static scales);
 *   wt_q8_image_f32    the input as 8-bit codes (wt_q8.h's rule) in a buffer padded with the zero
 *                      point: every tap of every output reads inside it, so the kernels have no edges;
 *   wt_conv2d_q8_f32 or wt_dwconv2d_q8_f32.
 *
 * Conv, layout "c4": per image and group, [ceil(cg/4)][H+2ph][W+2pw][4] signed codes c = x - 128: a
 * quad of channels sits together. The reduction index is ordered (quad, kh, kw, channel of the quad),
 * so a k group of 4 is one tap of 4 channels, and 4 output pixels of a row read one 16-byte vector at
 * stride 1 (stride 2: two, deinterleaved; other strides: 4 lane loads). Weights (+ wbias): panels
 * of 4 output channels x k groups, 16 bytes = 4 channels x 4 k, each channel's word splat by a
 * shuffle. SIMD128 (and 8-bit weights in relaxed builds): 4 x 4, widened to i16 (minus wbias),
 * i32x4.dot_i16x8_s, the k pairs folded at the end (as in wt_q8.h). Relaxed SIMD with 7-bit weights:
 * a 4-channel x 8-pixel tile, one i32x4.relaxed_dot_i8x16_i7x16_add_s per (channel, 4 pixels), the
 * +64 taken back with each output pixel's sum of codes over its window (once per row block). Epilogue: y = float(sum(c * q) + (128 - zp) * wsum[oc]) *
 * (scale * wscale[oc]) + bias[oc], clamped to [lo, hi].
 * Depthwise, layout planar [C][H+2ph][W+2pw] of unsigned codes x, 8-bit weights: 8 outputs at a
 * time, bytes widened by u16x8 loads, times the tap's weight splat as i16 with i32x4.extmul of both
 * halves; y = float(sum(x * q) - zp * wsum[oc]) * (scale * wscale[oc]) + bias[oc], clamped.
 * Chunks (wt_threads.h) split images, channels and output rows, never a sum: bit-identical at any
 * thread count, and the plain and relaxed builds agree bit for bit (exact integer sums).
 */
#pragma once
#include "wt_base.h"
#include "wt_q8.h"
#include "wt_quant.h"
#include "wt_threads.h"

#define WT_Q8_MAX_GROUPS 16384 /* k groups of one conv: = passes/quantize.py Q8_CONV_MAX_GROUPS */
#define WT_Q8_SUMS 16384       /* window sums a conv chunk keeps (rows x OW int32) */

/* ---- the activation range of each image ------------------------------------------------------------ */
typedef struct {
    float* part;
    const float* x;
    int n, blocks, per;
} wt_q8_mm_job;

WT_KERNEL void wt_q8_minmax_chunk(const void* p, int c) {
    const wt_q8_mm_job* j = (const wt_q8_mm_job*)p;
    int img = c / j->blocks, b = c % j->blocks;
    int lo = b * j->per, hi = WT_MIN(j->n, lo + j->per);
    wt_q8_range(j->x + (size_t)img * j->n + lo, WT_MAX(0, hi - lo), &j->part[2 * c], &j->part[2 * c + 1]);
}

/* One image: blocks of it in parallel, combined here (min and max are exact, in any order; NaN wins).
 * Several images: one chunk each, straight into mm. */
WT_KERNEL void wt_q8_minmax_f32(float* mm, const float* x, int N, int n) {
    if (N <= 0) return;
    float part[2 * WT_CHUNK_TARGET];
    wt_q8_mm_job j = {mm, x, n, 1, n};
    if (N == 1) {
        int blocks = WT_MAX(1, wt_chunks_for(n, 1));
        j.per = ((n + blocks - 1) / blocks + 3) & ~3;
        j.blocks = WT_MAX(1, (n + j.per - 1) / WT_MAX(1, j.per));
        j.part = part;
    }
    wt_parallel_for(WT_TASK_Q8_MINMAX, &j, N * j.blocks);
    if (N == 1) {
        float lo = part[0], hi = part[1];
        for (int b = 1; b < j.blocks; b++) {
            float l = part[2 * b], h = part[2 * b + 1];
            lo = (l != l || l < lo) ? l : lo;
            hi = (h != h || h > hi) ? h : hi;
        }
        mm[0] = lo;
        mm[1] = hi;
    }
}

/* ---- quantized, padded images ---------------------------------------------------------------------- */
typedef struct {
    uint8_t* xq;
    const float* params;
    const float* x;
    int C, H, W, groups, ph, pw, c4, img, items, total, per;
} wt_q8_img_job;

/* Rows of a padded plane that are all border: the zero point in every byte. */
WT_INLINE void wt_q8_fill(uint8_t* p, int n, int32_t zp) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)zp;
}

/* One plane of one image (c4: one quad of channels), border included. */
static void wt_q8_plane(const wt_q8_img_job* j, int item) {
    int n = item / j->items, k = item % j->items;
    int H = j->H, W = j->W, ph = j->ph, pw = j->pw, Hp = H + 2 * ph, Wp = W + 2 * pw;
    float inv = j->params[3 * n + 1];
    int32_t zp = (int32_t)j->params[3 * n + 2];
    const float* xn = j->x + (size_t)n * j->C * H * W;
    if (!j->c4) {
        uint8_t* dst = j->xq + (size_t)n * j->img + (size_t)k * Hp * Wp;
        const float* src = xn + (size_t)k * H * W;
        wt_q8_fill(dst, ph * Wp, zp);
        for (int h = 0; h < H; h++) {
            uint8_t* row = dst + (size_t)(h + ph) * Wp;
            wt_q8_fill(row, pw, zp);
            wt_q8_quant_row(row + pw, src + (size_t)h * W, W, W, inv, zp);
            wt_q8_fill(row + pw + W, pw, zp);
        }
        wt_q8_fill(dst + (size_t)(H + ph) * Wp, ph * Wp, zp);
        return;
    }
    int cg = j->C / j->groups, quads = (cg + 3) / 4, g = k / quads, qd = k % quads;
    int valid = WT_MIN(4, cg - 4 * qd);
    uint8_t* dst = j->xq + (size_t)n * j->img + (size_t)k * Hp * Wp * 4;
    const float* ch[4];
    for (int t = 0; t < 4; t++) ch[t] = xn + ((size_t)g * cg + 4 * qd + WT_MIN(t, valid - 1)) * H * W;
    v128_t vi = wasm_f32x4_splat(inv), vz = wasm_i32x4_splat(zp), flip = wasm_i8x16_splat((int8_t)0x80);
    int32_t zc = zp ^ 0x80; /* the zero point as a signed code: the padding */
    wt_q8_fill(dst, 4 * ph * Wp, zc);
    for (int h = 0; h < H; h++) {
        uint8_t* row = dst + (size_t)(h + ph) * Wp * 4;
        wt_q8_fill(row, 4 * pw, zc);
        wt_q8_fill(row + 4 * (pw + W), 4 * pw, zc);
        row += 4 * pw;
        for (int w = 0; w < W; w += 4) { /* 4 pixels x 4 channels, transposed to pixel-major */
            int nw = WT_MIN(4, W - w);
            float t[16];
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 4; l++) t[4 * c + l] = l < nw ? ch[c][(size_t)h * W + w + l] : 0.0f;
            v128_t b = wasm_v128_xor(wt_q8_quant16(t, vi, vz), flip); /* x ^ 0x80 = x - 128 as a signed byte */
            b = wasm_i8x16_shuffle(b, b, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
            uint8_t tb[16];
            wasm_v128_store(tb, b);
            for (int l = 0; l < nw; l++) /* channels past cg hold the zero point: their weights are 0 */
                for (int c = 0; c < 4; c++) row[4 * (w + l) + c] = c < valid ? tb[4 * l + c] : (uint8_t)zc;
        }
    }
    wt_q8_fill(dst + (size_t)(H + ph) * Wp * 4, 4 * ph * Wp, zc);
}

WT_KERNEL void wt_q8_image_chunk(const void* p, int c) {
    const wt_q8_img_job* j = (const wt_q8_img_job*)p;
    int end = WT_MIN(j->total, (c + 1) * j->per);
    for (int item = c * j->per; item < end; item++) wt_q8_plane(j, item);
}

WT_KERNEL void wt_q8_image_f32(uint8_t* xq, float* params, const float* mm, float s_scale, float s_inv, int s_zp,
                               const float* x, int N, int C, int H, int W, int groups, int ph, int pw, int c4,
                               int img, int slack) {
    if (N <= 0) return;
    for (int n = 0; n < N; n++) {
        float scale = s_scale, inv = s_inv;
        int32_t zp = s_zp;
        if (mm) wt_q8_params(mm[2 * n], mm[2 * n + 1], &scale, &inv, &zp);
        params[3 * n] = scale;
        params[3 * n + 1] = inv;
        params[3 * n + 2] = (float)zp;
    }
    for (int i = 0; i < slack; i++) xq[(size_t)N * img + i] = 0;
    int items = c4 ? groups * ((C / groups + 3) / 4) : C, total = N * items;
    int chunks = wt_chunks_for(total, (int64_t)(H + 2 * ph) * (W + 2 * pw) * (c4 ? 4 : 1) * 2);
    wt_q8_img_job j = {xq, params, x, C, H, W, groups, ph, pw, c4, img, items, total, (total + chunks - 1) / chunks};
    wt_parallel_for(WT_TASK_Q8_IMAGE, &j, (total + j.per - 1) / j.per);
}

/* ---- conv ------------------------------------------------------------------------------------------- */
/* 4 pixels' k group: the words at p, p + 4s, p + 8s, p + 12s (s = the column stride in pixels). */
WT_INLINE v128_t wt_q8_px4(const uint8_t* p, int sw) {
    if (sw == 1) return wasm_v128_load(p);
    if (sw == 2) {
        v128_t a = wasm_v128_load(p), b = wasm_v128_load(p + 16);
        return wasm_i32x4_shuffle(a, b, 0, 2, 4, 6);
    }
    uint32_t w[4];
    for (int l = 0; l < 4; l++) __builtin_memcpy(&w[l], p + (size_t)4 * l * sw, 4);
    return wasm_v128_load(w);
}

/* SIMD128: acc[oc][0]: 4 output channels x 4 pixels, sum(c * q); s[oc][h]: k pairs of pixels (0, 1)
 * and (2, 3); wbias taken off each weight as it is widened. */
WT_INLINE void wt_q8_conv_tile(const int8_t* w, const uint8_t* x, const int32_t* off, int G, int sw, int wbias,
                               v128_t acc[4][2]) {
    v128_t s00 = wasm_i32x4_splat(0), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
    v128_t bias = wasm_i16x8_splat(wbias);
    for (int g = 0; g < G; g++) {
        v128_t xv = wt_q8_px4(x + off[g], sw);
        v128_t xl = wasm_i16x8_extend_low_i8x16(xv), xh = wasm_i16x8_extend_high_i8x16(xv);
        v128_t wv = wasm_v128_load(w + 16 * g);
        v128_t w0 = wasm_i16x8_sub(wasm_i16x8_extend_low_i8x16(wasm_i32x4_shuffle(wv, wv, 0, 0, 0, 0)), bias);
        v128_t w1 = wasm_i16x8_sub(wasm_i16x8_extend_low_i8x16(wasm_i32x4_shuffle(wv, wv, 1, 1, 1, 1)), bias);
        v128_t w2 = wasm_i16x8_sub(wasm_i16x8_extend_low_i8x16(wasm_i32x4_shuffle(wv, wv, 2, 2, 2, 2)), bias);
        v128_t w3 = wasm_i16x8_sub(wasm_i16x8_extend_low_i8x16(wasm_i32x4_shuffle(wv, wv, 3, 3, 3, 3)), bias);
        s00 = wasm_i32x4_add(s00, wasm_i32x4_dot_i16x8(xl, w0));
        s01 = wasm_i32x4_add(s01, wasm_i32x4_dot_i16x8(xh, w0));
        s10 = wasm_i32x4_add(s10, wasm_i32x4_dot_i16x8(xl, w1));
        s11 = wasm_i32x4_add(s11, wasm_i32x4_dot_i16x8(xh, w1));
        s20 = wasm_i32x4_add(s20, wasm_i32x4_dot_i16x8(xl, w2));
        s21 = wasm_i32x4_add(s21, wasm_i32x4_dot_i16x8(xh, w2));
        s30 = wasm_i32x4_add(s30, wasm_i32x4_dot_i16x8(xl, w3));
        s31 = wasm_i32x4_add(s31, wasm_i32x4_dot_i16x8(xh, w3));
    }
#define WT_Q8_FOLD(a, b) wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 2, 4, 6), wasm_i32x4_shuffle(a, b, 1, 3, 5, 7))
    acc[0][0] = WT_Q8_FOLD(s00, s01), acc[1][0] = WT_Q8_FOLD(s10, s11);
    acc[2][0] = WT_Q8_FOLD(s20, s21), acc[3][0] = WT_Q8_FOLD(s30, s31);
#undef WT_Q8_FOLD
}

#if WT_Q8_DOT
/* Relaxed SIMD, 7-bit weights: acc[oc][h]: 4 output channels x 2 vectors of 4 pixels over G k
 * groups: sum(c * (q + 64)). */
WT_INLINE void wt_q8_conv_tile_dot(const int8_t* w, const uint8_t* x, const int32_t* off, int G, int sw,
                                   v128_t acc[4][2]) {
    v128_t a00 = wasm_i32x4_splat(0), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    for (int g = 0; g < G; g++) {
        const uint8_t* p = x + off[g];
        v128_t x0 = wt_q8_px4(p, sw), x1 = wt_q8_px4(p + 16 * sw, sw);
        v128_t wv = wasm_v128_load(w + 16 * g);
        v128_t w0 = wasm_i32x4_shuffle(wv, wv, 0, 0, 0, 0), w1 = wasm_i32x4_shuffle(wv, wv, 1, 1, 1, 1);
        v128_t w2 = wasm_i32x4_shuffle(wv, wv, 2, 2, 2, 2), w3 = wasm_i32x4_shuffle(wv, wv, 3, 3, 3, 3);
        a00 = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x0, w0, a00);
        a01 = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x1, w0, a01);
        a10 = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x0, w1, a10);
        a11 = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x1, w1, a11);
        a20 = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x0, w2, a20);
        a21 = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x1, w2, a21);
        a30 = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x0, w3, a30);
        a31 = wasm_i32x4_relaxed_dot_i8x16_i7x16_add(x1, w3, a31);
    }
    acc[0][0] = a00, acc[0][1] = a01, acc[1][0] = a10, acc[1][1] = a11;
    acc[2][0] = a20, acc[2][1] = a21, acc[3][0] = a30, acc[3][1] = a31;
}
#endif

/* Each output pixel's sum of codes over its window (all quads, taps and lanes), for rows [oh0, oh1):
 * sums[(oh - oh0) * OW + ow]. The relaxed tile adds 64 times it with the +64 of the weights. */
static void wt_q8_window_sums(int32_t* sums, const uint8_t* xg, int quads, int Hp, int Wp, int KH, int KW, int OW,
                              int sh, int sw, int dh, int dw, int oh0, int oh1) {
    int32_t col[Wp];
    for (int oh = oh0; oh < oh1; oh++) {
        for (int iw = 0; iw < Wp; iw++) col[iw] = 0;
        for (int q = 0; q < quads; q++)
            for (int kh = 0; kh < KH; kh++) {
                const int8_t* row = (const int8_t*)xg + (((size_t)q * Hp + (size_t)oh * sh + (size_t)kh * dh) * Wp) * 4;
                for (int iw = 0; iw < Wp; iw++) col[iw] += row[4 * iw] + row[4 * iw + 1] + row[4 * iw + 2] + row[4 * iw + 3];
            }
        int32_t* out = sums + (size_t)(oh - oh0) * OW;
        for (int ow = 0; ow < OW; ow++) {
            int32_t t = 0;
            for (int kw = 0; kw < KW; kw++) t += col[ow * sw + kw * dw];
            out[ow] = t;
        }
    }
}

/* One output vector: clamp(float(acc + off * wsum) * (scale * ws) + b, lo, hi); off takes the zero
 * point out: 128 - zp for signed codes, -zp for unsigned ones. */
WT_INLINE v128_t wt_q8_out4(v128_t acc, int32_t off, float scale, float ws, int32_t wsum, float b, v128_t lo, v128_t hi) {
    WT_FP_EXACT
    v128_t corr = wasm_i32x4_add(acc, wasm_i32x4_splat(off * wsum));
    v128_t y = wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_convert_i32x4(corr), wasm_f32x4_splat(scale * ws)),
                              wasm_f32x4_splat(b));
    return wasm_f32x4_pmin(wasm_f32x4_pmax(y, lo), hi); /* pmax/pmin keep a NaN, like torch's clamp */
}

WT_INLINE void wt_q8_store4(float* o, v128_t v, int n) {
    if (n >= 4) {
        wasm_v128_store(o, v);
    } else {
        float t[4];
        wasm_v128_store(t, v);
        for (int l = 0; l < n; l++) o[l] = t[l];
    }
}

typedef struct {
    float* out;
    const uint8_t* xq;
    const float* params;
    const int8_t* wp;
    const float* wscale;
    const int32_t* wsum;
    const float* bias;
    int C, Hp, Wp, OC, KH, KW, OH, OW, sh, sw, dh, dw, groups, img;
    float lo, hi;
    int wbias, rb, rblocks, pg, pgroups;
} wt_conv_q8_job;

WT_KERNEL void wt_conv_q8_chunk(const void* p, int c) {
    const wt_conv_q8_job* j = (const wt_conv_q8_job*)p;
    int groups = j->groups, cg = j->C / groups, ocg = j->OC / groups, quads = (cg + 3) / 4;
    int KH = j->KH, KW = j->KW, Hp = j->Hp, Wp = j->Wp, OH = j->OH, OW = j->OW, sw = j->sw;
    int G = quads * KH * KW, panels = (ocg + 3) / 4;
    int pgi = c % j->pgroups, rest = c / j->pgroups;
    int rbi = rest % j->rblocks, ng = rest / j->rblocks, g = ng % groups, n = ng / groups;
    int oh0 = rbi * j->rb, oh1 = WT_MIN(OH, oh0 + j->rb);
    int b0 = pgi * j->pg, b1 = WT_MIN(panels, b0 + j->pg);
    int32_t off[G]; /* byte offset of each k group (quad, kh, kw) from an output pixel's corner */
    for (int q = 0, t = 0; q < quads; q++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++, t++)
                off[t] = (int32_t)((((size_t)q * Hp + (size_t)kh * j->dh) * Wp + (size_t)kw * j->dw) * 4);
    const uint8_t* xg = j->xq + (size_t)n * j->img + (size_t)g * quads * Hp * Wp * 4;
    float scale = j->params[3 * n];
    int32_t zp = (int32_t)j->params[3 * n + 2];
    v128_t vlo = wasm_f32x4_splat(j->lo), vhi = wasm_f32x4_splat(j->hi);
    v128_t acc[4][2];
    int dot = WT_Q8_DOT && j->wbias == WT_Q8_WBIAS, cpx = dot ? 8 : 4; /* pixels per tile */
    int32_t sums[dot ? (oh1 - oh0) * OW + 8 : 1];
    if (dot) wt_q8_window_sums(sums, xg, quads, Hp, Wp, KH, KW, OW, j->sh, sw, j->dh, j->dw, oh0, oh1);
    for (int b = b0; b < b1; b++) {
        const int8_t* w = j->wp + ((size_t)g * panels + b) * G * 16;
        int mr = WT_MIN(4, ocg - 4 * b);
        const float* ws = j->wscale + (size_t)g * panels * 4 + 4 * b;
        const int32_t* wsum = j->wsum + (size_t)g * panels * 4 + 4 * b;
        for (int oh = oh0; oh < oh1; oh++) {
            const uint8_t* xr = xg + (size_t)oh * j->sh * Wp * 4;
            for (int ow = 0; ow < OW; ow += cpx) {
#if WT_Q8_DOT
                if (dot) {
                    wt_q8_conv_tile_dot(w, xr + (size_t)ow * sw * 4, off, G, sw, acc);
                    for (int h = 0; h < 2; h++) { /* take the +64 of the weights back: 64 x the window's codes */
                        v128_t fix = wasm_i32x4_mul(wasm_v128_load(sums + (size_t)(oh - oh0) * OW + ow + 4 * h),
                                                    wasm_i32x4_splat(-WT_Q8_WBIAS));
                        for (int r = 0; r < 4; r++) acc[r][h] = wasm_i32x4_add(acc[r][h], fix);
                    }
                } else
#endif
                    wt_q8_conv_tile(w, xr + (size_t)ow * sw * 4, off, G, sw, j->wbias, acc);
                int np = OW - ow;
                for (int r = 0; r < mr; r++) {
                    int oc = g * ocg + 4 * b + r;
                    float bb = j->bias ? j->bias[oc] : 0.0f;
                    float* o = j->out + (((size_t)n * j->OC + oc) * OH + oh) * OW + ow;
                    for (int h = 0; h < cpx / 4 && 4 * h < np; h++)
                        wt_q8_store4(o + 4 * h, wt_q8_out4(acc[r][h], 128 - zp, scale, ws[r], wsum[r], bb, vlo, vhi),
                                     np - 4 * h);
                }
            }
        }
    }
}

WT_KERNEL void wt_conv2d_q8_f32(float* out, const uint8_t* xq, const float* params, const int8_t* wp,
                                const float* wscale, const int32_t* wsum, const float* bias, int N, int C, int Hp,
                                int Wp, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int dh, int dw,
                                int groups, int img, float lo, float hi, int wbias) {
    int cg = C / groups, ocg = OC / groups, G = (cg + 3) / 4 * KH * KW;
    if (N <= 0 || OH <= 0 || OW <= 0 || ocg <= 0) return;
    if (G > WT_Q8_MAX_GROUPS) __builtin_trap(); /* the pass never emits one: the offsets live on the stack */
    int panels = (ocg + 3) / 4, base = N * groups;
    int want = wt_chunks_for((int64_t)base * OH * panels, (int64_t)OW * 4 * G * 8);
    int rblocks = WT_MAX(1, WT_MIN(OH, (want + base - 1) / base));
    int rb = WT_MIN((OH + rblocks - 1) / rblocks, WT_MAX(1, WT_Q8_SUMS / OW)); /* window sums on the stack */
    rblocks = (OH + rb - 1) / rb;
    int pgroups = base * rblocks >= want ? 1 : WT_MIN(panels, (want + base * rblocks - 1) / (base * rblocks));
    int pg = (panels + pgroups - 1) / pgroups;
    pgroups = (panels + pg - 1) / pg;
    wt_conv_q8_job j = {out, xq, params, wp, wscale, wsum, bias, C, Hp, Wp, OC, KH, KW, OH, OW, sh, sw, dh, dw,
                        groups, img, lo, hi, wbias, rb, rblocks, pg, pgroups};
    wt_parallel_for(WT_TASK_CONV_Q8, &j, base * rblocks * pgroups);
}

/* ---- depthwise -------------------------------------------------------------------------------------- */
/* 8 pixels' codes widened to i16: bytes p[0], p[s], ..., p[7s]. */
WT_INLINE v128_t wt_q8_px8(const uint8_t* p, int sw) {
    if (sw == 1) return wasm_u16x8_load8x8(p);
    if (sw == 2) {
        v128_t v = wasm_v128_load(p);
        return wasm_u16x8_extend_low_u8x16(wasm_i8x16_shuffle(v, v, 0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0));
    }
    uint16_t t[8];
    for (int l = 0; l < 8; l++) t[l] = p[(size_t)l * sw];
    return wasm_v128_load(t);
}

typedef struct {
    float* out;
    const uint8_t* xq;
    const float* params;
    const int8_t* w;
    const float* wscale;
    const int32_t* wsum;
    const float* bias;
    int C, Hp, Wp, OC, KH, KW, OH, OW, sh, sw, dh, dw, img;
    float lo, hi;
    int planes, per;
} wt_dw_q8_job;

/* Output planes (image, output channel) [c * per, ...). */
WT_KERNEL void wt_dw_q8_chunk(const void* p, int c) {
    const wt_dw_q8_job* j = (const wt_dw_q8_job*)p;
    int KH = j->KH, KW = j->KW, taps = KH * KW, Wp = j->Wp, OW = j->OW, sw = j->sw, mult = j->OC / j->C;
    v128_t wv[64];
    v128_t vlo = wasm_f32x4_splat(j->lo), vhi = wasm_f32x4_splat(j->hi);
    int end = WT_MIN(j->planes, (c + 1) * j->per);
    for (int plane = c * j->per; plane < end; plane++) {
        int n = plane / j->OC, oc = plane % j->OC;
        const uint8_t* xp = j->xq + (size_t)n * j->img + (size_t)(oc / mult) * j->Hp * Wp;
        for (int t = 0; t < taps; t++) wv[t] = wasm_i16x8_splat(j->w[(size_t)oc * taps + t]);
        float scale = j->params[3 * n], bb = j->bias ? j->bias[oc] : 0.0f;
        int32_t zp = (int32_t)j->params[3 * n + 2];
        float* op = j->out + ((size_t)n * j->OC + oc) * j->OH * OW;
        for (int oh = 0; oh < j->OH; oh++) {
            const uint8_t* row = xp + (size_t)oh * j->sh * Wp;
            for (int ow = 0; ow < OW; ow += 8) {
                v128_t a0 = wasm_i32x4_splat(0), a1 = a0;
                const uint8_t* s0 = row + (size_t)ow * sw;
                for (int kh = 0, t = 0; kh < KH; kh++) {
                    const uint8_t* s = s0 + (size_t)kh * j->dh * Wp;
                    for (int kw = 0; kw < KW; kw++, t++) {
                        v128_t xv = wt_q8_px8(s + (size_t)kw * j->dw, sw);
                        a0 = wasm_i32x4_add(a0, wasm_i32x4_extmul_low_i16x8(xv, wv[t]));
                        a1 = wasm_i32x4_add(a1, wasm_i32x4_extmul_high_i16x8(xv, wv[t]));
                    }
                }
                int np = OW - ow;
                float* o = op + (size_t)oh * OW + ow;
                wt_q8_store4(o, wt_q8_out4(a0, -zp, scale, j->wscale[oc], j->wsum[oc], bb, vlo, vhi), np);
                if (np > 4)
                    wt_q8_store4(o + 4, wt_q8_out4(a1, -zp, scale, j->wscale[oc], j->wsum[oc], bb, vlo, vhi), np - 4);
            }
        }
    }
}

WT_KERNEL void wt_dwconv2d_q8_f32(float* out, const uint8_t* xq, const float* params, const int8_t* w,
                                  const float* wscale, const int32_t* wsum, const float* bias, int N, int C, int Hp,
                                  int Wp, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int dh, int dw,
                                  int img, float lo, float hi) {
    int planes = N * OC;
    if (planes <= 0 || C <= 0 || OH <= 0 || OW <= 0) return;
    if (KH * KW > 64) __builtin_trap(); /* the pass never emits one: the splat weights live on the stack */
    int n = wt_chunks_for(planes, (int64_t)OH * OW * KH * KW * 2);
    wt_dw_q8_job j = {out, xq, params, w, wscale, wsum, bias, C, Hp, Wp, OC, KH, KW, OH, OW, sh, sw, dh, dw, img,
                      lo, hi, planes, (planes + n - 1) / n};
    wt_parallel_for(WT_TASK_DW_Q8, &j, (planes + j.per - 1) / j.per);
}
