/* Softmax, log-softmax and layer norm over one axis of a contiguous tensor viewed as
 * (outer, n, inner). inner == 1 is the common, vectorised case. */
#pragma once
#include "wt_base.h"

WT_KERNEL void wt_softmax_f32(float* out, const float* x, int outer, int n, int inner, int log_out) {
    for (int o = 0; o < outer; o++) {
        for (int in = 0; in < inner; in++) {
            const float* xp = x + (size_t)o * n * inner + in;
            float* op = out + (size_t)o * n * inner + in;
            float m = -__builtin_inff();
            for (int i = 0; i < n; i++) m = WT_MAX(m, xp[(size_t)i * inner]);
            if (m == -__builtin_inff()) m = 0.0f; /* an all -inf row gives NaN, like torch */
            float s = 0.0f;
            for (int i = 0; i < n; i++) {
                float e = wt_expf(xp[(size_t)i * inner] - m);
                if (!log_out) op[(size_t)i * inner] = e;
                s += e;
            }
            if (log_out) {
                float ls = wt_logf(s) + m;
                for (int i = 0; i < n; i++) op[(size_t)i * inner] = xp[(size_t)i * inner] - ls;
            } else {
                float r = 1.0f / s;
                for (int i = 0; i < n; i++) op[(size_t)i * inner] *= r;
            }
        }
    }
}

WT_KERNEL void wt_layer_norm_f32(float* out, const float* x, const float* w, const float* b, int outer, int n,
                              float eps) {
    for (int o = 0; o < outer; o++) {
        const float* xp = x + (size_t)o * n;
        float* op = out + (size_t)o * n;
        float mean = 0.0f;
        for (int i = 0; i < n; i++) mean += xp[i];
        mean /= (float)n;
        float var = 0.0f;
        for (int i = 0; i < n; i++) { float d = xp[i] - mean; var += d * d; }
        var /= (float)n;
        float r = 1.0f / __builtin_sqrtf(var + eps);
        for (int i = 0; i < n; i++) {
            float y = (xp[i] - mean) * r;
            if (w) y *= w[i];
            if (b) y += b[i];
            op[i] = y;
        }
    }
}
