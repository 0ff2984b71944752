/* 2-D resize over NCHW (F.interpolate / nn.Upsample): nearest, nearest-exact and bilinear, with
 * PyTorch's CPU index arithmetic (aten/src/ATen/native/UpSample.h), in float like torch:
 *
 *   scale = align_corners ? (in - 1) / (out - 1)            (0 when out == 1)
 *                         : (a scale factor was given ? 1 / factor : in / out)
 *   nearest:        src = min(floor(dst * scale), in - 1)   (dst itself when out == in; dst >> 1 when out == 2 in)
 *   nearest-exact:  src = min(floor((dst + 0.5) * scale), in - 1)
 *   bilinear:       src = align_corners ? dst * scale : max(scale * (dst + 0.5) - 0.5, 0);
 *                   i0 = (int)src, i1 = i0 + (i0 < in - 1), l1 = src - i0, l0 = 1 - l1
 *                   out = l0h * (l0w * x[i0h,i0w] + l1w * x[i0h,i1w]) + l1h * (l0w * x[i1h,i0w] + l1w * x[i1h,i1w])
 *
 * `inv_h`/`inv_w` are the scales above, computed by the caller (codegen) exactly as torch does in
 * float. Column indices and weights are computed once per call into `scratch` (2 ints + 2 floats
 * per output column; the memory plan sizes it), rows on the fly; each output row is then a
 * gather of two (bilinear) or one (nearest) input rows.
 */
#pragma once
#include "wt_base.h"

enum { WT_RESIZE_NEAREST = 0, WT_RESIZE_NEAREST_EXACT = 1, WT_RESIZE_BILINEAR = 2 };

WT_INLINE int wt_resize_nearest_index(int dst, int in, int out, float scale, int exact) {
    if (!exact && out == in) return dst;
    if (!exact && out == 2 * in) return dst >> 1;
    float s = exact ? ((float)dst + 0.5f) * scale : (float)dst * scale;
    int i = (int)__builtin_floorf(s);
    return i < in - 1 ? i : in - 1;
}

WT_INLINE void wt_resize_linear_index(int dst, int in, float scale, int align_corners, int* i0, int* i1, float* l1) {
    float src = align_corners ? scale * (float)dst : scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    int i = (int)src;
    if (i > in - 1) i = in - 1;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    float l = src - (float)i;
    *l1 = l < 1.0f ? l : 1.0f;
}

WT_KERNEL void wt_resize2d_f32(float* out, const float* x, int NC, int H, int W, int OH, int OW, int mode,
                               int align_corners, float scale_h, float scale_w, int32_t* scratch) {
    int32_t* c0 = scratch;
    int32_t* c1 = scratch + OW;
    float* cl = (float*)(scratch + 2 * OW);
    for (int j = 0; j < OW; j++) {
        if (mode == WT_RESIZE_BILINEAR) {
            int a, b;
            float l;
            wt_resize_linear_index(j, W, scale_w, align_corners, &a, &b, &l);
            c0[j] = a, c1[j] = b, cl[j] = l;
        } else {
            c0[j] = wt_resize_nearest_index(j, W, OW, scale_w, mode == WT_RESIZE_NEAREST_EXACT);
        }
    }
    for (int p = 0; p < NC; p++) {
        const float* xp = x + (size_t)p * H * W;
        float* op = out + (size_t)p * OH * OW;
        for (int i = 0; i < OH; i++) {
            float* orow = op + (size_t)i * OW;
            if (mode != WT_RESIZE_BILINEAR) {
                const float* r = xp + (size_t)wt_resize_nearest_index(i, H, OH, scale_h, mode == WT_RESIZE_NEAREST_EXACT) * W;
                for (int j = 0; j < OW; j++) orow[j] = r[c0[j]];
                continue;
            }
            int h0, h1;
            float lh1;
            wt_resize_linear_index(i, H, scale_h, align_corners, &h0, &h1, &lh1);
            float lh0 = 1.0f - lh1;
            const float* r0 = xp + (size_t)h0 * W;
            const float* r1 = xp + (size_t)h1 * W;
            for (int j = 0; j < OW; j++) {
                float lw1 = cl[j], lw0 = 1.0f - lw1;
                int a = c0[j], b = c1[j];
                orow[j] = lh0 * (lw0 * r0[a] + lw1 * r0[b]) + lh1 * (lw0 * r1[a] + lw1 * r1[b]);
            }
        }
    }
}
