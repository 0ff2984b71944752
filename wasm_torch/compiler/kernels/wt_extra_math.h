/* Scalar math for the elementwise ops added for model-zoo coverage (ops/elementwise_more.py):
 * C-style fmod (sign of the dividend, like torch.fmod). */
#pragma once
#include "wt_base.h"

/* torch.fmod on floats: a - trunc(a / b) * b, in double: exact whenever |a / b| < 2^24 (then the
 * double quotient truncates to the true integer part and the product and difference are exact);
 * b == 0 gives NaN like torch. */
WT_INLINE float wt_fmodf(float a, float b) {
    double q = (double)a / (double)b;
    double t = q < 0 ? __builtin_ceil(q) : __builtin_floor(q);
    float r = (float)((double)a - t * (double)b);
    return (r == 0.0f) ? __builtin_copysignf(0.0f, a) : r;
}

/* expm1 without the cancellation of exp(x) - 1 near 0: a Taylor polynomial for |x| < 0.25
 * (relative error < 2e-8 there), exp(x) - 1 elsewhere (where the subtraction loses < 1 bit). */
WT_INLINE float wt_expm1f(float x) {
    if (__builtin_fabsf(x) < 0.25f) {
        float x2 = x * x;
        return x + x2 * (0.5f + x * (1.0f / 6.0f + x * (1.0f / 24.0f + x * (1.0f / 120.0f + x * (1.0f / 720.0f + x * (1.0f / 5040.0f))))));
    }
    return wt_expf(x) - 1.0f;
}
