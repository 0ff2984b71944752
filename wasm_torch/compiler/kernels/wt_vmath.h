/* SIMD128 float math, four lanes at a time: exp, erf, GELU (erf and tanh forms), tanh, sigmoid, SiLU.
 *
 * Every function here performs, lane by lane, exactly the float operations of its scalar twin in
 * wt_base.h (wt_expf, wt_erff, ...) in the same order, so a vector loop and its scalar tail give
 * bit-identical results and an element's value never depends on its position. Both halves start with
 * WT_FP_EXACT (wt_base.h), which stops -ffast-math from reassociating either of them; the arithmetic
 * below is written with vector-extension operators (WT_VADD...) so the pragma covers it (the
 * wasm_f32x4_add intrinsics are defined in a header compiled with the file's fast-math flags).
 *
 * Accuracy against float64 torch, as tests/compiler/test_vmath.py checks it: exp 1 ulp, tanh 2 ulp,
 * sigmoid 2.5 ulp, SiLU 3.5 ulp, erf 1e-7 absolute, GELU 1.2e-7·max(1, |x|) and its tanh form
 * 1.5e-7·max(1, |x|). Special values follow torch: exp(-inf) = 0, exp(x > 88.72) = inf, NaN in ->
 * NaN out, erf(±inf) = ±1, gelu(-inf) = NaN. Methods and figures: docs/compiler.md.
 */
#pragma once
#include "wt_base.h"

typedef v128_t wt_f4;

#define WT_F4(c) wasm_f32x4_const_splat(c)
typedef float wt_vf32 __attribute__((vector_size(16)));
#define WT_VADD(a, b) ((v128_t)((wt_vf32)(a) + (wt_vf32)(b)))
#define WT_VSUB(a, b) ((v128_t)((wt_vf32)(a) - (wt_vf32)(b)))
#define WT_VMUL(a, b) ((v128_t)((wt_vf32)(a) * (wt_vf32)(b)))
#define WT_VDIV(a, b) ((v128_t)((wt_vf32)(a) / (wt_vf32)(b)))
/* lane-wise c ? a : b (c is a comparison mask) */
#define WT_VSEL(c, a, b) wasm_v128_bitselect((a), (b), (c))

/* The ops (wt_v_tanhf, ...) are not forced inline: at -Os the model code keeps one copy of each and
 * calls it. The helpers inside them (exp, the erf pieces) are, so an op never pays a call per vector. */
#define WT_VINLINE static inline
#define WT_VHELPER static inline __attribute__((always_inline))

WT_VHELPER wt_f4 wt_v_copysign(wt_f4 mag, wt_f4 sign) {
    const v128_t s = wasm_i32x4_const_splat((int32_t)0x80000000u);
    return wasm_v128_or(wasm_v128_andnot(mag, s), wasm_v128_and(sign, s));
}

WT_VHELPER wt_f4 wt_v_expf(wt_f4 x) { /* twin of wt_expf */
    WT_FP_EXACT
    x = wasm_f32x4_pmin(wasm_f32x4_pmax(x, WT_F4(WT_EXP_LO)), WT_F4(WT_EXP_HI));
    wt_f4 n = wasm_f32x4_nearest(WT_VMUL(x, WT_F4(WT_EXP_LOG2E)));
    wt_f4 r = WT_VSUB(x, WT_VMUL(n, WT_F4(WT_EXP_LN2_HI)));
    r = WT_VSUB(r, WT_VMUL(n, WT_F4(WT_EXP_LN2_LO)));
    wt_f4 p = WT_F4(WT_EXP_P0);
    p = WT_VADD(WT_VMUL(p, r), WT_F4(WT_EXP_P1));
    p = WT_VADD(WT_VMUL(p, r), WT_F4(WT_EXP_P2));
    p = WT_VADD(WT_VMUL(p, r), WT_F4(WT_EXP_P3));
    p = WT_VADD(WT_VMUL(p, r), WT_F4(WT_EXP_P4));
    p = WT_VADD(WT_VMUL(p, r), WT_F4(WT_EXP_P5));
    p = WT_VADD(WT_VADD(WT_VMUL(WT_VMUL(p, r), r), r), WT_F4(1.0f));
    /* n is an integer-valued float: adding 1.5·2^23 puts it in the low mantissa bits */
    v128_t ni = wasm_i32x4_sub(WT_VADD(n, WT_F4(WT_EXP_SHIFTER)), wasm_i32x4_const_splat(WT_EXP_SHIFTER_BITS));
    v128_t e1 = wasm_i32x4_shr(ni, 1), e2 = wasm_i32x4_sub(ni, e1);
    p = WT_VMUL(p, wasm_i32x4_shl(wasm_i32x4_add(e1, wasm_i32x4_const_splat(127)), 23));
    return WT_VMUL(p, wasm_i32x4_shl(wasm_i32x4_add(e2, wasm_i32x4_const_splat(127)), 23));
}

/* erf(x) = x + x·A(x²) for |x| < WT_ERF_SPLIT (twin of wt_erf_smallf) */
WT_VHELPER wt_f4 wt_v_erf_small(wt_f4 x) {
    WT_FP_EXACT
    wt_f4 s = WT_VMUL(x, x);
    wt_f4 y = WT_F4(WT_ERF_A5);
    y = WT_VADD(WT_VMUL(y, s), WT_F4(WT_ERF_A4));
    y = WT_VADD(WT_VMUL(y, s), WT_F4(WT_ERF_A3));
    y = WT_VADD(WT_VMUL(y, s), WT_F4(WT_ERF_A2));
    y = WT_VADD(WT_VMUL(y, s), WT_F4(WT_ERF_A1));
    y = WT_VADD(WT_VMUL(y, s), WT_F4(WT_ERF_A0));
    return WT_VADD(x, WT_VMUL(x, y));
}

/* erfc(z) = t·exp(-z²)·B(t), t = 1/(1 + z/2), for z >= WT_ERF_SPLIT (twin of wt_erfc_tailf) */
WT_VHELPER wt_f4 wt_v_erfc_tail(wt_f4 z) {
    WT_FP_EXACT
    wt_f4 t = WT_VDIV(WT_F4(1.0f), WT_VADD(WT_F4(1.0f), WT_VMUL(WT_F4(0.5f), z)));
    wt_f4 b = WT_F4(WT_ERFC_B7);
    b = WT_VADD(WT_VMUL(b, t), WT_F4(WT_ERFC_B6));
    b = WT_VADD(WT_VMUL(b, t), WT_F4(WT_ERFC_B5));
    b = WT_VADD(WT_VMUL(b, t), WT_F4(WT_ERFC_B4));
    b = WT_VADD(WT_VMUL(b, t), WT_F4(WT_ERFC_B3));
    b = WT_VADD(WT_VMUL(b, t), WT_F4(WT_ERFC_B2));
    b = WT_VADD(WT_VMUL(b, t), WT_F4(WT_ERFC_B1));
    b = WT_VADD(WT_VMUL(b, t), WT_F4(WT_ERFC_B0));
    return WT_VMUL(WT_VMUL(t, wt_v_expf(wasm_f32x4_neg(WT_VMUL(z, z)))), b);
}

WT_VINLINE wt_f4 wt_v_erff(wt_f4 x) { /* twin of wt_erff */
    WT_FP_EXACT
    wt_f4 z = wasm_f32x4_abs(x);
    wt_f4 big = wt_v_copysign(WT_VSUB(WT_F4(1.0f), wt_v_erfc_tail(z)), x);
    return WT_VSEL(wasm_f32x4_lt(z, WT_F4(WT_ERF_SPLIT)), wt_v_erf_small(x), big);
}

WT_VINLINE wt_f4 wt_v_geluf(wt_f4 x) { /* twin of wt_geluf: x·Φ(x) from erfc, one formula */
    WT_FP_EXACT
    wt_f4 z = wasm_f32x4_abs(WT_VMUL(x, WT_F4(0.70710678118654752f)));
    wt_f4 t = WT_VDIV(WT_F4(1.0f), WT_VADD(WT_F4(1.0f), WT_VMUL(WT_F4(0.5f), z)));
    wt_f4 g = WT_F4(WT_GELU_G8);
    g = WT_VADD(WT_VMUL(g, t), WT_F4(WT_GELU_G7));
    g = WT_VADD(WT_VMUL(g, t), WT_F4(WT_GELU_G6));
    g = WT_VADD(WT_VMUL(g, t), WT_F4(WT_GELU_G5));
    g = WT_VADD(WT_VMUL(g, t), WT_F4(WT_GELU_G4));
    g = WT_VADD(WT_VMUL(g, t), WT_F4(WT_GELU_G3));
    g = WT_VADD(WT_VMUL(g, t), WT_F4(WT_GELU_G2));
    g = WT_VADD(WT_VMUL(g, t), WT_F4(WT_GELU_G1));
    g = WT_VADD(WT_VMUL(g, t), WT_F4(WT_GELU_G0));
    wt_f4 h = WT_VMUL(WT_F4(0.5f), WT_VMUL(WT_VMUL(t, wt_v_expf(wasm_f32x4_neg(WT_VMUL(z, z)))), g));
    return WT_VMUL(x, WT_VSEL(wasm_f32x4_lt(x, WT_F4(0.0f)), h, WT_VSUB(WT_F4(1.0f), h)));
}

WT_VINLINE wt_f4 wt_v_tanhf(wt_f4 x) { /* twin of wt_tanhf */
    WT_FP_EXACT
    wt_f4 a = wasm_f32x4_abs(x);
    wt_f4 z = WT_VMUL(x, x);
    wt_f4 p = WT_F4(WT_TANH_P4);
    p = WT_VADD(WT_VMUL(p, z), WT_F4(WT_TANH_P3));
    p = WT_VADD(WT_VMUL(p, z), WT_F4(WT_TANH_P2));
    p = WT_VADD(WT_VMUL(p, z), WT_F4(WT_TANH_P1));
    p = WT_VADD(WT_VMUL(p, z), WT_F4(WT_TANH_P0));
    wt_f4 small = WT_VADD(WT_VMUL(WT_VMUL(p, z), x), x);
    wt_f4 e = wt_v_expf(WT_VMUL(WT_F4(2.0f), a));
    wt_f4 big = WT_VSUB(WT_F4(1.0f), WT_VDIV(WT_F4(2.0f), WT_VADD(e, WT_F4(1.0f))));
    return WT_VSEL(wasm_f32x4_lt(a, WT_F4(WT_TANH_SPLIT)), small, wt_v_copysign(big, x));
}

WT_VHELPER wt_f4 wt_v_sigmoidf(wt_f4 x) { /* twin of wt_sigmoidf */
    WT_FP_EXACT
    wt_f4 e = wt_v_expf(wasm_f32x4_neg(wasm_f32x4_abs(x)));
    wt_f4 num = WT_VSEL(wasm_f32x4_lt(x, WT_F4(0.0f)), e, WT_F4(1.0f));
    return WT_VDIV(num, WT_VADD(WT_F4(1.0f), e));
}

WT_VINLINE wt_f4 wt_v_siluf(wt_f4 x) {
    WT_FP_EXACT
    return WT_VMUL(x, wt_v_sigmoidf(x));
}

WT_VINLINE wt_f4 wt_v_gelu_tanhf(wt_f4 x) { /* twin of wt_gelu_tanhf: x·sigmoid(2u) = x·(1 + tanh u)/2 */
    WT_FP_EXACT
    wt_f4 x3 = WT_VMUL(WT_VMUL(WT_VMUL(WT_F4(0.044715f), x), x), x);
    return WT_VMUL(x, wt_v_sigmoidf(WT_VMUL(WT_F4(WT_GELU_TANH_2K), WT_VADD(x, x3))));
}
