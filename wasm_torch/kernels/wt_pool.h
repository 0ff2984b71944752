/* Max / average / adaptive-average pooling over NCHW. Semantics follow PyTorch exactly:
 * padding counts toward the divisor when count_include_pad, windows clipped at the edges. */
#pragma once
#include "wt_base.h"

WT_KERNEL void wt_pool2d_f32(float* out, const float* x, int NC, int H, int W, int OH, int OW, int kh, int kw,
                          int sh, int sw, int ph, int pw, int dh, int dw, int is_max, int count_include_pad,
                          int divisor_override) {
    for (int c = 0; c < NC; c++) {
        const float* xp = x + (size_t)c * H * W;
        float* op = out + (size_t)c * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            for (int ow = 0; ow < OW; ow++) {
                int h0 = oh * sh - ph, w0 = ow * sw - pw;
                float acc = is_max ? -__builtin_inff() : 0.0f;
                int cnt = 0;
                for (int i = 0; i < kh; i++) {
                    int h = h0 + i * dh;
                    if (h < 0 || h >= H) continue;
                    for (int j = 0; j < kw; j++) {
                        int ww = w0 + j * dw;
                        if (ww < 0 || ww >= W) continue;
                        float v = xp[(size_t)h * W + ww];
                        if (is_max) { if (v > acc || v != v) acc = v; } else acc += v;
                        cnt++;
                    }
                }
                if (!is_max) {
                    int div = cnt;
                    if (divisor_override) div = divisor_override;
                    else if (count_include_pad) {
                        int he = WT_MIN(h0 + kh, H + ph), we = WT_MIN(w0 + kw, W + pw);
                        div = (he - h0) * (we - w0);
                    }
                    acc /= (float)div;
                }
                op[(size_t)oh * OW + ow] = acc;
            }
        }
    }
}

WT_KERNEL void wt_adaptive_avg_pool2d_f32(float* out, const float* x, int NC, int H, int W, int OH, int OW) {
    for (int c = 0; c < NC; c++) {
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
