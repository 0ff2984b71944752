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
 */
#pragma once
#include "wt_base.h"

#define WT_DW_SLACK 32 /* floats after the padded plane: the last vector group may read past its end */

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
                    a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wt, wt_dw_load4(s, sw)));
                    a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wt, wt_dw_load4(s + 4 * sw, sw)));
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

WT_KERNEL void wt_dwconv2d_f32(float* out, const float* x, const float* w, const float* bias, float* scratch,
                               int scratch_len, int N, int C, int H, int W, int OC, int KH, int KW, int OH, int OW,
                               int sh, int sw, int ph, int pw, int dh, int dw, float lo, float hi) {
    int mult = OC / C, taps = KH * KW;
    int need = wt_dw_scratch(H, W, KH, KW, sw, ph, pw);
    if (need == 0 || need > scratch_len) { /* the reference path */
        for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++) {
            const float* xp = x + ((size_t)n * C + oc / mult) * H * W;
            float b = bias ? bias[oc] : 0.0f;
            float* op = out + ((size_t)n * OC + oc) * OH * OW;
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++)
                    op[(size_t)oh * OW + ow] = wt_clampf(
                        wt_dw_point(xp, w + (size_t)oc * taps, b, H, W, KH, KW, oh * sh - ph, ow * sw - pw, dh, dw),
                        lo, hi);
        }
        return;
    }
    int Wp = W + 2 * pw;
    __builtin_memset(scratch, 0, (size_t)need * sizeof(float)); /* the border stays zero from here on */
    v128_t vlo = wasm_f32x4_splat(lo), vhi = wasm_f32x4_splat(hi);
    v128_t wv[64];
    for (int n = 0; n < N; n++)
    for (int oc = 0; oc < OC; oc++) {
        if (oc % mult == 0) { /* a new input channel: copy its plane inside the zero border */
            const float* xp = x + ((size_t)n * C + oc / mult) * H * W;
            for (int h = 0; h < H; h++) { /* a loop: memory.copy is a call into the host per row */
                float* d = scratch + (size_t)(h + ph) * Wp + pw;
                const float* s = xp + (size_t)h * W;
                int i = 0;
                for (; i + 4 <= W; i += 4) wasm_v128_store(d + i, wasm_v128_load(s + i));
                for (; i < W; i++) d[i] = s[i];
            }
        }
        for (int t = 0; t < taps; t++) wv[t] = wasm_v128_load32_splat(w + (size_t)oc * taps + t);
        v128_t b = wasm_f32x4_splat(bias ? bias[oc] : 0.0f);
        float* op = out + ((size_t)n * OC + oc) * OH * OW;
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
