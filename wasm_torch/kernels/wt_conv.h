/* 2-D convolution (NCHW, OIHW weights), grouped/depthwise, stride, padding, dilation.
 * Correctness-first: for each output channel, accumulate input planes into the output plane;
 * the inner loop over output columns is contiguous when stride == 1, which clang vectorises. */
#pragma once
#include "wt_base.h"

WT_KERNEL void wt_conv2d_f32(float* out, const float* x, const float* w, const float* bias, int N, int C, int H,
                          int W, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw, int dh,
                          int dw, int groups) {
    int cg = C / groups, ocg = OC / groups;
    for (int n = 0; n < N; n++) {
        for (int oc = 0; oc < OC; oc++) {
            int g = oc / ocg;
            float* op = out + ((size_t)n * OC + oc) * OH * OW;
            float b0 = bias ? bias[oc] : 0.0f;
            for (int i = 0; i < OH * OW; i++) op[i] = b0;
            for (int c = 0; c < cg; c++) {
                const float* xp = x + ((size_t)n * C + g * cg + c) * H * W;
                const float* wp = w + ((size_t)oc * cg + c) * KH * KW;
                for (int kh = 0; kh < KH; kh++) {
                    for (int kw = 0; kw < KW; kw++) {
                        float wv = wp[kh * KW + kw];
                        /* output columns whose input column is in range: ow in [lo, hi) */
                        int off = kw * dw - pw;
                        int lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                        int hi = (W - off + sw - 1) / sw;
                        if (hi > OW) hi = OW;
                        for (int oh = 0; oh < OH; oh++) {
                            int ih = oh * sh - ph + kh * dh;
                            if (ih < 0 || ih >= H) continue;
                            const float* xr = xp + (size_t)ih * W + off;
                            float* orow = op + (size_t)oh * OW;
                            if (sw == 1) {
                                for (int ow = lo; ow < hi; ow++) orow[ow] += wv * xr[ow];
                            } else {
                                for (int ow = lo; ow < hi; ow++) orow[ow] += wv * xr[ow * sw];
                            }
                        }
                    }
                }
            }
        }
    }
}
