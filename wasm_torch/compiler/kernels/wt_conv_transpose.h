/* Transposed 2-D convolution over NCHW (ConvTranspose1d/2d), weights (IC, OC/groups, KH, KW) as
 * PyTorch stores them. Each input pixel scatters into the output:
 *
 *   out[n, oc, ih*sh - ph + kh*dh, iw*sw - pw + kw*dw] += x[n, ic, ih, iw] * w[ic, oc % ocg, kh, kw]
 *
 * Per (n, oc) the output plane starts from the bias; then for each input channel of its group and
 * each tap, a scaled input row is added into the output row it lands on: the row loop skips rows
 * outside the output, the column range is computed once per tap, so the inner loop is a plain
 * strided multiply-add (contiguous and vectorised by clang when sw == 1). output_padding only
 * changes OH/OW (the caller's shapes). One thread, so the scatter has no races.
 */
#pragma once
#include "wt_base.h"

WT_KERNEL void wt_conv_transpose2d_f32(float* out, const float* x, const float* w, const float* bias, int N,
                                       int IC, int H, int W, int OC, int KH, int KW, int OH, int OW, int sh,
                                       int sw, int ph, int pw, int dh, int dw, int groups) {
    int icg = IC / groups, ocg = OC / groups;
    for (int n = 0; n < N; n++) {
        for (int oc = 0; oc < OC; oc++) {
            float* op = out + ((size_t)n * OC + oc) * OH * OW;
            float b0 = bias ? bias[oc] : 0.0f;
            for (size_t k = 0; k < (size_t)OH * OW; k++) op[k] = b0;
            int g = oc / ocg, o = oc % ocg;
            for (int c = 0; c < icg; c++) {
                int ic = g * icg + c;
                const float* xp = x + ((size_t)n * IC + ic) * H * W;
                const float* wp = w + ((size_t)ic * ocg + o) * KH * KW;
                for (int kh = 0; kh < KH; kh++) {
                    for (int kw = 0; kw < KW; kw++) {
                        float wv = wp[kh * KW + kw];
                        int off = kw * dw - pw; /* ow = iw * sw + off */
                        /* iw range with 0 <= iw*sw + off < OW */
                        int iw0 = off >= 0 ? 0 : (-off + sw - 1) / sw;
                        int iw1 = (OW - 1 - off) < 0 ? -1 : (OW - 1 - off) / sw;
                        if (iw1 > W - 1) iw1 = W - 1;
                        if (iw0 > iw1) continue;
                        for (int ih = 0; ih < H; ih++) {
                            int oh = ih * sh - ph + kh * dh;
                            if (oh < 0 || oh >= OH) continue;
                            const float* xr = xp + (size_t)ih * W;
                            float* orow = op + (size_t)oh * OW + off;
                            if (sw == 1) {
                                for (int iw = iw0; iw <= iw1; iw++) orow[iw] += wv * xr[iw];
                            } else {
                                for (int iw = iw0; iw <= iw1; iw++) orow[iw * sw] += wv * xr[iw];
                            }
                        }
                    }
                }
            }
        }
    }
}
