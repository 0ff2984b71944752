/* wasm-torch kernel library: base types, integer helpers and float math.
 *
 * Freestanding: no libc. The math functions below are our own (Cephes-style polynomials), so
 * results are identical on every host that runs the module — which the edge network relies on
 * when it compares replicated results. Accuracy: expf/logf ~1 ulp, erff abs error < 1e-7.
 * SIMD twins of expf/erff/tanhf/sigmoidf/geluf live in wt_vmath.h.
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

/* c + a*b on f32x4: one fused multiply-add (f32x4.relaxed_madd, rounded once) in relaxed-SIMD builds
 * (build/variants.py), mul then add otherwise. Only the register-tile microkernels use it, where every
 * element of an output is computed the same way; relaxed builds otherwise keep -ffp-contract=off, so
 * vector lanes and scalar tails still round identically there. */
#ifdef __wasm_relaxed_simd__
#define WT_MADD(c, a, b) wasm_f32x4_relaxed_madd(a, b, c)
#else
#define WT_MADD(c, a, b) wasm_f32x4_add(c, wasm_f32x4_mul(a, b))
#endif

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

/* Functions that start with WT_FP_EXACT are compiled without -ffast-math's reassociation, reciprocal
 * or contraction, so they round exactly as written: the SIMD twins in wt_vmath.h do the same
 * operations in the same order and give bit-identical results (tests/compiler/test_vmath.py checks). */
#define WT_FP_EXACT _Pragma("clang fp reassociate(off) reciprocal(off) contract(off)")

/* exp: x = n·ln2 + r, |r| <= ln2/2 (ln2 split in two for an exact product), Cephes degree-6
 * polynomial for e^r, then 2^n applied in two halves so subnormal results keep their bits. */
#define WT_EXP_LOG2E 1.44269504088896341f
#define WT_EXP_LN2_HI 0.693359375f
#define WT_EXP_LN2_LO -2.12194440e-4f
#define WT_EXP_P0 1.9875691500E-4f
#define WT_EXP_P1 1.3981999507E-3f
#define WT_EXP_P2 8.3334519073E-3f
#define WT_EXP_P3 4.1665795894E-2f
#define WT_EXP_P4 1.6666665459E-1f
#define WT_EXP_P5 5.0000001201E-1f
/* x is clamped to [LO, HI] first (NaN passes through): exp(HI) overflows to +inf and exp(LO) rounds to
 * 0 by themselves, so no special cases are needed. */
#define WT_EXP_HI 88.75f
#define WT_EXP_LO -104.0f
#define WT_EXP_SHIFTER 12582912.0f /* 1.5·2^23: n + this has n in its low mantissa bits */
#define WT_EXP_SHIFTER_BITS 0x4B400000

WT_INLINE float wt_expf(float x) {
    WT_FP_EXACT
    x = x < WT_EXP_LO ? WT_EXP_LO : x; /* = wasm_f32x4_pmax(x, LO), NaN stays */
    x = WT_EXP_HI < x ? WT_EXP_HI : x; /* = wasm_f32x4_pmin(x, HI) */
    float n = __builtin_roundevenf(x * WT_EXP_LOG2E);
    float r = x - n * WT_EXP_LN2_HI;
    r = r - n * WT_EXP_LN2_LO;
    float p = WT_EXP_P0;
    p = p * r + WT_EXP_P1;
    p = p * r + WT_EXP_P2;
    p = p * r + WT_EXP_P3;
    p = p * r + WT_EXP_P4;
    p = p * r + WT_EXP_P5;
    p = p * r * r + r + 1.0f;
    int32_t e = (int32_t)(wt_f_to_bits(n + WT_EXP_SHIFTER) - (uint32_t)WT_EXP_SHIFTER_BITS);
    int32_t e1 = e >> 1, e2 = e - e1; /* each half keeps 2^e1, 2^e2 normal */
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

/* erf in float, abs error < 1e-7 on the whole line: below the split erf(x) = x + x·A(x²), above it
 * erf = 1 - erfc with erfc(z) = t·exp(-z²)·B(t), t = 1/(1 + z/2). A and B are near-minimax
 * (Lawson-weighted least squares) fits to erf(x)/x - 1 on [0, 0.84375] (rel. error 6e-9) and to
 * erfc(z)·exp(z²)/t on [0.84375, 10] (rel. error 2e-8), rounded to float. */
#define WT_ERF_SPLIT 0.84375f
#define WT_ERF_A0 0.128379107f
#define WT_ERF_A1 -0.376125753f
#define WT_ERF_A2 0.112827756f
#define WT_ERF_A3 -0.0268051066f
#define WT_ERF_A4 0.00505562685f
#define WT_ERF_A5 -0.000634294178f
#define WT_ERFC_B0 0.282105267f
#define WT_ERFC_B1 0.281892389f
#define WT_ERFC_B2 0.248264104f
#define WT_ERFC_B3 0.172645777f
#define WT_ERFC_B4 0.0777223483f
#define WT_ERFC_B5 0.0560862608f
#define WT_ERFC_B6 -0.203911930f
#define WT_ERFC_B7 0.0856219828f

WT_INLINE float wt_erf_smallf(float x) { /* |x| < WT_ERF_SPLIT */
    WT_FP_EXACT
    float s = x * x;
    float y = WT_ERF_A5;
    y = y * s + WT_ERF_A4;
    y = y * s + WT_ERF_A3;
    y = y * s + WT_ERF_A2;
    y = y * s + WT_ERF_A1;
    y = y * s + WT_ERF_A0;
    return x + x * y;
}

WT_INLINE float wt_erfc_tailf(float z) { /* z >= WT_ERF_SPLIT; also right for +inf and NaN */
    WT_FP_EXACT
    float t = 1.0f / (1.0f + 0.5f * z);
    float b = WT_ERFC_B7;
    b = b * t + WT_ERFC_B6;
    b = b * t + WT_ERFC_B5;
    b = b * t + WT_ERFC_B4;
    b = b * t + WT_ERFC_B3;
    b = b * t + WT_ERFC_B2;
    b = b * t + WT_ERFC_B1;
    b = b * t + WT_ERFC_B0;
    return t * wt_expf(-(z * z)) * b;
}

WT_INLINE float wt_copysignf(float mag, float sign) {
    return wt_bits_to_f((wt_f_to_bits(mag) & 0x7fffffffu) | (wt_f_to_bits(sign) & 0x80000000u));
}

WT_INLINE float wt_erff(float x) {
    WT_FP_EXACT
    float z = __builtin_fabsf(x);
    if (z < WT_ERF_SPLIT) return wt_erf_smallf(x);
    return wt_copysignf(1.0f - wt_erfc_tailf(z), x);
}

/* tanh: Cephes polynomial below 0.625, else 1 - 2/(e^{2|x|} + 1) with the sign of x. */
#define WT_TANH_SPLIT 0.625f
#define WT_TANH_P0 -3.33332819422E-1f
#define WT_TANH_P1 1.33314422036E-1f
#define WT_TANH_P2 -5.37397155531E-2f
#define WT_TANH_P3 2.06390887954E-2f
#define WT_TANH_P4 -5.70498872745E-3f

WT_INLINE float wt_tanhf(float x) {
    WT_FP_EXACT
    float a = __builtin_fabsf(x);
    if (a < WT_TANH_SPLIT) {
        float z = x * x;
        float p = WT_TANH_P4;
        p = p * z + WT_TANH_P3;
        p = p * z + WT_TANH_P2;
        p = p * z + WT_TANH_P1;
        p = p * z + WT_TANH_P0;
        return p * z * x + x;
    }
    return wt_copysignf(1.0f - 2.0f / (wt_expf(2.0f * a) + 1.0f), x);
}

/* sigmoid from e = exp(-|x|) (never overflows): e/(1+e) for x < 0, 1/(1+e) otherwise. */
WT_INLINE float wt_sigmoidf(float x) {
    WT_FP_EXACT
    float e = wt_expf(-__builtin_fabsf(x));
    return (x < 0.0f ? e : 1.0f) / (1.0f + e);
}
WT_INLINE float wt_siluf(float x) {
    WT_FP_EXACT
    return x * wt_sigmoidf(x);
}

/* GELU = x·Φ(x), Φ(x) = erfc(-x/√2)/2. With z = |x|/√2 and h = erfc(z)/2 = t·exp(-z²)·G(t)/2,
 * t = 1/(1 + z/2), Φ = h for x < 0 and 1 - h otherwise: one branch-free formula for every x (no erf
 * near 0: GELU only needs Φ to ~1e-8 absolute), and negative x keep a relative error below 1e-5 down
 * to x = -10, where the 1 + erf form cancels. G: the same kind of fit as B above, on z in [0, 10]
 * (relative error 4e-8). */
#define WT_GELU_G0 0.282086432f
#define WT_GELU_G1 0.282375306f
#define WT_GELU_G2 0.243103772f
#define WT_GELU_G3 0.202686816f
#define WT_GELU_G4 -0.0266255084f
#define WT_GELU_G5 0.278066903f
#define WT_GELU_G6 -0.487199634f
#define WT_GELU_G7 0.284574807f
#define WT_GELU_G8 -0.0590689257f

WT_INLINE float wt_geluf(float x) {
    WT_FP_EXACT
    float z = __builtin_fabsf(x * 0.70710678118654752f);
    float t = 1.0f / (1.0f + 0.5f * z);
    float g = WT_GELU_G8;
    g = g * t + WT_GELU_G7;
    g = g * t + WT_GELU_G6;
    g = g * t + WT_GELU_G5;
    g = g * t + WT_GELU_G4;
    g = g * t + WT_GELU_G3;
    g = g * t + WT_GELU_G2;
    g = g * t + WT_GELU_G1;
    g = g * t + WT_GELU_G0;
    float h = 0.5f * (t * wt_expf(-(z * z)) * g);
    return x * (x < 0.0f ? h : 1.0f - h);
}

/* tanh-approximated GELU, 0.5·x·(1 + tanh(u)), computed as x·sigmoid(2u): the same function. */
#define WT_GELU_TANH_2K 1.5957691216057308f /* 2·sqrt(2/pi) */
WT_INLINE float wt_gelu_tanhf(float x) {
    WT_FP_EXACT
    float x3 = 0.044715f * x * x * x;
    return x * wt_sigmoidf(WT_GELU_TANH_2K * (x + x3));
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

/* Out-of-range gather/index: trap (the host reports it), never read another tensor's bytes.
   Valid indices are [0, n): a negative id is out of range, as torch's embedding, index_select
   and gather treat it (no wrap-around to the last row). */
WT_INLINE int64_t wt_check_index(int64_t i, int64_t n) {
    if (i < 0 || i >= n) __builtin_trap();
    return i;
}
