/* wasm-torch kernel library: base types, integer helpers and float math.
 *
 * Freestanding: no libc. The math functions below are our own (Cephes-style polynomials), so
 * results are identical on every host that runs the module — which the edge network relies on
 * when it compares replicated results. Accuracy: expf/logf ~1 ulp, erff ~1.2e-7 relative.
 */
#pragma once
#include <stdint.h>
#include <stddef.h>
#include <wasm_simd128.h>

#define WT_EXPORT __attribute__((visibility("default")))
#define WT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define WT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define WT_INLINE static inline __attribute__((always_inline))
/* Heavy kernels are compiled once, at -O3, in kernels.c; model code (at -Os) links to them. */
#define WT_KERNEL __attribute__((visibility("hidden")))

typedef uint8_t wt_bool;

WT_INLINE int64_t wt_floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}
WT_INLINE int64_t wt_ceildiv(int64_t a, int64_t b) { return -wt_floordiv(-a, b); }
WT_INLINE int64_t wt_mod(int64_t a, int64_t b) {
    int64_t r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
WT_INLINE float wt_fmodf_py(float a, float b) { /* Python/torch remainder: sign of the divisor */
    float r = a - b * __builtin_floorf(a / b);
    return r;
}

WT_INLINE float wt_bits_to_f(uint32_t u) { float f; __builtin_memcpy(&f, &u, 4); return f; }
WT_INLINE uint32_t wt_f_to_bits(float f) { uint32_t u; __builtin_memcpy(&u, &f, 4); return u; }

WT_INLINE float wt_expf(float x) {
    if (x > 88.72283935546875f) return wt_bits_to_f(0x7f800000u);
    if (x < -103.97208404541015625f) return 0.0f;
    if (x != x) return x;
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = (int32_t)n;
    /* scale by 2^e in two steps so subnormal results stay accurate */
    int32_t e1 = e / 2, e2 = e - e1;
    p *= wt_bits_to_f((uint32_t)(e1 + 127) << 23);
    return p * wt_bits_to_f((uint32_t)(e2 + 127) << 23);
}

WT_INLINE float wt_logf(float x) {
    if (x != x || x < 0.0f) return wt_bits_to_f(0x7fc00000u);
    if (x == 0.0f) return -wt_bits_to_f(0x7f800000u);
    if (x == wt_bits_to_f(0x7f800000u)) return x;
    int32_t e = 0;
    if (x < 1.17549435e-38f) { x *= 8388608.0f; e = -23; } /* subnormal */
    uint32_t u = wt_f_to_bits(x);
    e += (int32_t)((u >> 23) & 0xff) - 126;
    float m = wt_bits_to_f((u & 0x007fffffu) | 0x3f000000u); /* m in [0.5, 1) */
    if (m < 0.707106781186547524f) { e -= 1; m = m + m - 1.0f; } else { m = m - 1.0f; }
    float z = m * m;
    float y = 7.0376836292E-2f;
    y = y * m - 1.1514610310E-1f;
    y = y * m + 1.1676998740E-1f;
    y = y * m - 1.2420140846E-1f;
    y = y * m + 1.4249322787E-1f;
    y = y * m - 1.6668057665E-1f;
    y = y * m + 2.0000714765E-1f;
    y = y * m - 2.4999993993E-1f;
    y = y * m + 3.3333331174E-1f;
    y = y * m * z;
    float fe = (float)e;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return m + y + 0.693359375f * fe;
}

WT_INLINE float wt_log1pf(float x) {
    /* log(1+x) without cancellation: u = 1+x rounds, and log(u) * x/(u-1) corrects for it. */
    float u = 1.0f + x;
    if (u == 1.0f) return x;
    if (u == wt_bits_to_f(0x7f800000u)) return u;
    return wt_logf(u) * (x / (u - 1.0f));
}

WT_INLINE float wt_erff(float x) {
    /* Numerical Recipes erfc (Chebyshev fit), fractional error < 1.2e-7, evaluated in double. */
    double z = x < 0 ? -(double)x : (double)x;
    double t = 1.0 / (1.0 + 0.5 * z);
    double p = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
               t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
               t * (-0.82215223 + t * 0.17087277))))))));
    double ec = t * (double)wt_expf((float)p);
    /* near zero the series is more accurate: erf(x) = 2/sqrt(pi) (x - x^3/3 + x^5/10 - x^7/42 + x^9/216) */
    if (z < 0.5) {
        double x2 = (double)x * (double)x;
        return (float)(1.1283791670955126 * (double)x *
                       (1.0 - x2 * (1.0 / 3 - x2 * (1.0 / 10 - x2 * (1.0 / 42 - x2 * (1.0 / 216 - x2 / 1320))))));
    }
    double r = 1.0 - ec;
    return (float)(x < 0 ? -r : r);
}

WT_INLINE float wt_tanhf(float x) {
    float a = x < 0 ? -x : x;
    if (a < 0.625f) {
        float z = x * x;
        float p = -5.70498872745E-3f;
        p = p * z + 2.06390887954E-2f;
        p = p * z - 5.37397155531E-2f;
        p = p * z + 1.33314422036E-1f;
        p = p * z - 3.33332819422E-1f;
        return p * z * x + x;
    }
    if (a > 9.0f) return x < 0 ? -1.0f : 1.0f;
    float r = 1.0f - 2.0f / (wt_expf(2.0f * a) + 1.0f);
    return x < 0 ? -r : r;
}

WT_INLINE float wt_sigmoidf(float x) { return 1.0f / (1.0f + wt_expf(-x)); }
WT_INLINE float wt_geluf(float x) { return 0.5f * x * (1.0f + wt_erff(x * 0.70710678118654752f)); }
WT_INLINE float wt_gelu_tanhf(float x) {
    return 0.5f * x * (1.0f + wt_tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* sin/cos in double: reduce by multiples of pi/2, then Taylor polynomials on [-pi/4, pi/4]. */
WT_INLINE double wt_sin_poly(double r) {
    double z = r * r;
    return r * (1 - z / 6 * (1 - z / 20 * (1 - z / 42 * (1 - z / 72 * (1 - z / 110 * (1 - z / 156))))));
}
WT_INLINE double wt_cos_poly(double r) {
    double z = r * r;
    return 1 - z / 2 * (1 - z / 12 * (1 - z / 30 * (1 - z / 56 * (1 - z / 90 * (1 - z / 132)))));
}
WT_INLINE float wt_sincosf(float x, int want_cos) {
    double k = __builtin_floor((double)x * 0.63661977236758134 + 0.5);
    double r = (double)x - k * 1.5707963267948966;
    int q = ((int64_t)k + want_cos) & 3;
    double s = (q & 1) ? wt_cos_poly(r) : wt_sin_poly(r);
    return (float)((q & 2) ? -s : s);
}
WT_INLINE float wt_sinf(float x) { return wt_sincosf(x, 0); }
WT_INLINE float wt_cosf(float x) { return wt_sincosf(x, 1); }

WT_INLINE float wt_powf(float a, float b) {
    if (b == 2.0f) return a * a;
    if (b == 1.0f) return a;
    if (b == 0.0f) return 1.0f;
    if (b == 0.5f) return __builtin_sqrtf(a);
    if (b == 3.0f) return a * a * a;
    float fb = __builtin_floorf(b);
    if (a < 0.0f) {
        if (fb != b) return wt_bits_to_f(0x7fc00000u);
        float r = wt_expf(b * wt_logf(-a));
        return ((int64_t)fb & 1) ? -r : r;
    }
    if (a == 0.0f) return b > 0 ? 0.0f : wt_bits_to_f(0x7f800000u);
    return wt_expf(b * wt_logf(a));
}

/* Out-of-range gather/index: trap (the host reports it), never read another tensor's bytes. */
WT_INLINE int64_t wt_check_index(int64_t i, int64_t n) {
    if (i < 0) i += n;
    if (i < 0 || i >= n) __builtin_trap();
    return i;
}
