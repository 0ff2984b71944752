/* Depthwise convolution (groups == C: one input channel per output channel; OC may be a multiple
 * of C), NCHW, any kernel size, stride, padding and dilation, with bias and the clamp epilogue of
 * wt_conv.h (lo/hi).
 *
 * Fast path (column stride 1 or 2, at most 64 taps): each input plane is copied once into `scratch`
 * (a value of the memory plan) with its zero padding around it, so every output column is
 * "interior": 8 outputs at a time accumulate KH*KW products of pre-splatted weights and unaligned
 * loads (stride 2: the even lanes of two loads), with no edge cases; the last partial group of a row
 * is stored through a small buffer. Otherwise: the scalar reference loop (wt_dw_point), which
 * clips each window at the image edges.
 *
 * Parallel split (wt_threads.h): chunks are blocks of input channels (image, channel) with all their
 * output channels, a function of the shapes. A chunk pads its planes into a buffer on its own
 * stack (planes up to WT_DW_STACK_FLOATS); a larger plane uses the memory plan's `scratch` and runs
 * as a single chunk.
 */
#pragma once
#include "wt_base.h"
#include "wt_threads.h"

#define WT_DW_SLACK 32 /* floats after the padded plane: the last vector group may read past its end */
#define WT_DW_STACK_FLOATS 65536 /* the largest padded plane a chunk keeps on its stack (256 KB) */

WT_INLINE float wt_dw_point(const float* xp, const float* wk, float b, int H, int W, int KH, int KW, int ih0,
                            int iw0, int dh, int dw) {
    float acc = b;
    for (int kh = 0; kh < KH; kh++) {
        int ih = ih0 + kh * dh;
        if ((unsigned)ih >= (unsigned)H) continue;
        for (int kw = 0; kw < KW; kw++) {
            int iw = iw0 + kw * dw;
            if ((unsigned)iw < (unsigned)W) acc += wk[kh * KW + kw] * xp[(size_t)ih * W + iw];
        }
    }
    return acc;
}

/* the scalar twin of pmin(pmax(v, lo), hi): a NaN stays NaN */
WT_INLINE float wt_clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* 4 consecutive outputs' inputs for one tap: s[0], s[sw], s[2sw], s[3sw] (sw is 1 or 2). */
WT_INLINE v128_t wt_dw_load4(const float* s, int sw) {
    if (sw == 1) return wasm_v128_load(s);
    return wasm_i32x4_shuffle(wasm_v128_load(s), wasm_v128_load(s + 4), 0, 2, 4, 6);
}

/* Floats of scratch the fast path needs (0: it is not taken). Mirrored by passes/pack_conv.py. */
WT_INLINE int wt_dw_scratch(int H, int W, int KH, int KW, int sw, int ph, int pw) {
    if (sw > 2 || KH * KW > 64) return 0;
    return (H + 2 * ph) * (W + 2 * pw) + WT_DW_SLACK;
}

/* One output plane from a zero-padded input plane (row stride Wp), 8 columns at a time. */
WT_INLINE void wt_dw_plane(float* op, const float* plane, const v128_t* wv, v128_t b, int OH, int OW, int Wp, int KH,
                           int KW, int sh, int sw, int dh, int dw, v128_t lo, v128_t hi) {
    float tmp[8];
    for (int oh = 0; oh < OH; oh++) {
        const float* row = plane + (size_t)oh * sh * Wp;
        float* orow = op + (size_t)oh * OW;
        for (int ow = 0; ow < OW; ow += 8) {
            v128_t a0 = b, a1 = b;
            const float* s0 = row + (size_t)ow * sw;
            for (int kh = 0; kh < KH; kh++, s0 += (size_t)dh * Wp) {
                const float* s = s0;
                for (int kw = 0; kw < KW; kw++, s += dw) {
                    v128_t wt = wv[kh * KW + kw];
                    a0 = WT_MADD(a0, wt, wt_dw_load4(s, sw));
                    a1 = WT_MADD(a1, wt, wt_dw_load4(s + 4 * sw, sw));
                }
            }
            a0 = wasm_f32x4_pmin(wasm_f32x4_pmax(a0, lo), hi);
            a1 = wasm_f32x4_pmin(wasm_f32x4_pmax(a1, lo), hi);
            if (ow + 8 <= OW) {
                wasm_v128_store(orow + ow, a0);
                wasm_v128_store(orow + ow + 4, a1);
            } else {
                wasm_v128_store(tmp, a0);
                wasm_v128_store(tmp + 4, a1);
                for (int l = 0; l < OW - ow; l++) orow[ow + l] = tmp[l];
            }
        }
    }
}

typedef struct {
    float* out;
    const float* x;
    const float* w;
    const float* bias;
    float* scratch; /* the memory plan's buffer: used only when a plane is too big for the stack */
    int C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw;
    float lo, hi;
    int need, fast, planes, per;
} wt_dw_job;

/* Input planes (image, input channel) [chunk * per, ...) with all their output channels. */
WT_KERNEL void wt_dw_chunk(const void* p, int chunk) {
    const wt_dw_job* j = (const wt_dw_job*)p;
    int C = j->C, H = j->H, W = j->W, OC = j->OC, KH = j->KH, KW = j->KW, OH = j->OH, OW = j->OW;
    int sh = j->sh, sw = j->sw, ph = j->ph, pw = j->pw, dh = j->dh, dw = j->dw;
    int mult = OC / C, taps = KH * KW;
    int e = WT_MIN(j->planes, (chunk + 1) * j->per);
    if (!j->fast) { /* the reference path */
        for (int plane = chunk * j->per; plane < e; plane++) {
            int n = plane / C, c = plane % C;
            const float* xp = j->x + ((size_t)n * C + c) * H * W;
            for (int oc = c * mult; oc < (c + 1) * mult; oc++) {
                float b = j->bias ? j->bias[oc] : 0.0f;
                float* op = j->out + ((size_t)n * OC + oc) * OH * OW;
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++)
                        op[(size_t)oh * OW + ow] = wt_clampf(
                            wt_dw_point(xp, j->w + (size_t)oc * taps, b, H, W, KH, KW, oh * sh - ph, ow * sw - pw, dh,
                                        dw),
                            j->lo, j->hi);
            }
        }
        return;
    }
    float local[j->need <= WT_DW_STACK_FLOATS ? j->need : 1];
    float* scratch = j->need <= WT_DW_STACK_FLOATS ? local : j->scratch;
    int Wp = W + 2 * pw;
    __builtin_memset(scratch, 0, (size_t)j->need * sizeof(float)); /* the border stays zero from here on */
    v128_t vlo = wasm_f32x4_splat(j->lo), vhi = wasm_f32x4_splat(j->hi);
    v128_t wv[64];
    for (int plane = chunk * j->per; plane < e; plane++) {
        int n = plane / C, c = plane % C;
        const float* xp = j->x + ((size_t)n * C + c) * H * W;
        for (int h = 0; h < H; h++) { /* a loop: memory.copy is a call into the host per row */
            float* d = scratch + (size_t)(h + ph) * Wp + pw;
            const float* s = xp + (size_t)h * W;
            int i = 0;
            for (; i + 4 <= W; i += 4) wasm_v128_store(d + i, wasm_v128_load(s + i));
            for (; i < W; i++) d[i] = s[i];
        }
        for (int oc = c * mult; oc < (c + 1) * mult; oc++) {
            for (int t = 0; t < taps; t++) wv[t] = wasm_v128_load32_splat(j->w + (size_t)oc * taps + t);
            v128_t b = wasm_f32x4_splat(j->bias ? j->bias[oc] : 0.0f);
            float* op = j->out + ((size_t)n * OC + oc) * OH * OW;
            /* constant arguments let clang unroll the taps of the common kernels */
            if (KH == 3 && KW == 3 && dh == 1 && dw == 1 && sw == 1)
                wt_dw_plane(op, scratch, wv, b, OH, OW, Wp, 3, 3, sh, 1, 1, 1, vlo, vhi);
            else if (KH == 3 && KW == 3 && dh == 1 && dw == 1 && sw == 2)
                wt_dw_plane(op, scratch, wv, b, OH, OW, Wp, 3, 3, sh, 2, 1, 1, vlo, vhi);
            else if (KH == 5 && KW == 5 && dh == 1 && dw == 1 && sw == 1)
                wt_dw_plane(op, scratch, wv, b, OH, OW, Wp, 5, 5, sh, 1, 1, 1, vlo, vhi);
            else if (KH == 5 && KW == 5 && dh == 1 && dw == 1 && sw == 2)
                wt_dw_plane(op, scratch, wv, b, OH, OW, Wp, 5, 5, sh, 2, 1, 1, vlo, vhi);
            else
                wt_dw_plane(op, scratch, wv, b, OH, OW, Wp, KH, KW, sh, sw, dh, dw, vlo, vhi);
        }
    }
}

WT_KERNEL void wt_dwconv2d_f32(float* out, const float* x, const float* w, const float* bias, float* scratch,
                               int scratch_len, int N, int C, int H, int W, int OC, int KH, int KW, int OH, int OW,
                               int sh, int sw, int ph, int pw, int dh, int dw, float lo, float hi) {
    int planes = N * C;
    if (planes <= 0 || C <= 0) return;
    int need = wt_dw_scratch(H, W, KH, KW, sw, ph, pw);
    int fast = need > 0 && (need <= WT_DW_STACK_FLOATS || need <= scratch_len);
    int n = fast && need > WT_DW_STACK_FLOATS ? 1 : wt_chunks_for(planes, (int64_t)(OC / C) * OH * OW * KH * KW * 2);
    wt_dw_job j = {out, x, w, bias, scratch, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, lo, hi,
                   need, fast, planes, (planes + n - 1) / n};
    wt_parallel_for(WT_TASK_DWCONV, &j, (planes + j.per - 1) / j.per);
}
