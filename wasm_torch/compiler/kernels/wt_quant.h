/* Reduced-precision weights as seen by generated model code: the IEEE half -> float conversion
 * (inline, scalar and f32x4) and the prototypes of the fp16 and int8 kernels (wt_f16.h, wt_q8.h,
 * wt_conv_q8.h, compiled in kernels.c). The formats, the quantization rules and the packed layouts
 * are described in docs/quantization.md; passes/quantize.py writes the weights.
 *
 * int8 in one paragraph: weights are symmetric per output channel, q = rint(w / s) in [-127, 127]
 * with s = max|w| / 127 (7 bits, [-63, 63] stored + 64, when the artifact has a relaxed-SIMD build:
 * i32x4.relaxed_dot_i8x16_i7x16_add_s is defined the same on every engine only when its second
 * operand has the top bit clear); activations are asymmetric 8-bit, per row of a GEMM (per token) or
 * per image of a convolution, x = clamp(rint(a * inv) + zp, 0, 255) with inv = 255 / (max - min) over
 * a range that includes 0. Every build sums sum((x - zp) * q) exactly in int32, so the SIMD128 and
 * relaxed builds give identical bits. y = float(sum((x - zp) * q)) * (s_x * s_w) + bias.
 */
#pragma once
#include "wt_base.h"

/* One IEEE half (its 16 bits) as a float, exactly: the exponent and mantissa bits are moved into a
 * float's place and multiplied by 2^112 (2^(127-15)), which is exact for normal and subnormal halves
 * alike; inf and NaN (exponent 31) keep an all-ones exponent. */
WT_INLINE float wt_f16_to_f32(uint16_t h) {
    WT_FP_EXACT
    uint32_t em = (uint32_t)(h & 0x7fffu) << 13;
    float f = wt_bits_to_f(em) * 5.192296858534828e33f; /* 0x1p112f */
    uint32_t bits = em >= (0x7c00u << 13) ? (em | 0x7f800000u) : wt_f_to_bits(f);
    return wt_bits_to_f(bits | ((uint32_t)(h & 0x8000u) << 16));
}

/* Four halves, zero-extended into the u32 lanes of h, as four floats (the same steps as above). */
WT_INLINE v128_t wt_f16x4_to_f32(v128_t h) {
    WT_FP_EXACT
    v128_t em = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x7fff)), 13);
    v128_t f = wasm_f32x4_mul(em, wasm_f32x4_splat(5.192296858534828e33f));
    v128_t special = wasm_i32x4_gt(em, wasm_i32x4_splat(0x7bff << 13));
    f = wasm_v128_bitselect(wasm_v128_or(em, wasm_i32x4_splat(0x7f800000)), f, special);
    return wasm_v128_or(f, wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16));
}

/* ---- fp16 weights, f32 compute (wt_f16.h) -------------------------------------------------------- */
/* out = act(a @ W + bias): W packed like wt_gemm_packed_act_f32's panels, as halves. */
WT_KERNEL void wt_gemm_f16_f32(float* out, const float* a, const uint16_t* wp, const float* bias, int M, int N, int K,
                               int act);
/* wt_conv2d_packed_f32 with the weight panels as halves. */
WT_KERNEL void wt_conv2d_f16_f32(float* out, const float* x, const uint16_t* wp, const float* bias, int N, int C,
                                 int H, int W, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw,
                                 int dh, int dw, int groups, float lo, float hi);

/* ---- int8 GEMM (wt_q8.h) ------------------------------------------------------------------------- */
/* Rows of a (M x K floats) -> codes q (M x 2Kp int16 in [0, 127]: each group of 4 k stored twice,
 * zero past K), scale[M], zp[M]: per-row asymmetric 7-bit. */
WT_KERNEL void wt_q8_rows(int16_t* q, float* scale, int32_t* zp, const float* a, int M, int K, int Kp);
/* out (M x N) = act(float(sum((x - zp) * q)) * (scale * wscale) + bias); W packed by passes/quantize.py
 * as q + wbias (0: 8-bit weights; 64: 7-bit weights, which relaxed-SIMD builds multiply with the
 * relaxed dot product). */
WT_KERNEL void wt_gemm_q8_f32(float* out, const int16_t* q, const float* scale, const int32_t* zp, const int8_t* wp,
                              const float* wscale, const int32_t* wsum, const float* bias, int M, int N, int Kp,
                              int act, int wbias);

/* ---- int8 convolution (wt_conv_q8.h) ------------------------------------------------------------- */
/* Per image: min and max of x (n elements each), with 0 (mm[2i], mm[2i + 1]): the dynamic range. */
WT_KERNEL void wt_q8_minmax_f32(float* mm, const float* x, int N, int n);
/* N images as u7 codes in a zero-point-padded layout (c4 = 1: per group [ceil(cg/4)][H+2ph][W+2pw][4],
 * channels in fours, for the implicit-GEMM conv; c4 = 0: [C][H+2ph][W+2pw], for depthwise), img bytes
 * per image, `slack` zero bytes after the last (the tiles of a row's end read a little past it). params[3i .. 3i+3) = scale, 1/scale, zero point:
 * from mm (dynamic) or, when mm is 0, the static s_scale, s_inv, s_zp calibrated at compile time. */
WT_KERNEL void wt_q8_image_f32(uint8_t* xq, float* params, const float* mm, float s_scale, float s_inv, int s_zp,
                               const float* x, int N, int C, int H, int W, int groups, int ph, int pw, int c4,
                               int img, int slack);
/* out = clamp(float(acc - zp * wsum) * (scale * wscale) + bias, lo, hi) over an image quantized by
 * wt_q8_image_f32 (Hp, Wp: the padded size); weights packed by passes/quantize.py. */
WT_KERNEL void wt_conv2d_q8_f32(float* out, const uint8_t* xq, const float* params, const int8_t* wp,
                                const float* wscale, const int32_t* wsum, const float* bias, int N, int C, int Hp,
                                int Wp, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int dh, int dw,
                                int groups, int img, float lo, float hi, int wbias);
WT_KERNEL void wt_dwconv2d_q8_f32(float* out, const uint8_t* xq, const float* params, const int8_t* w,
                                  const float* wscale, const int32_t* wsum, const float* bias, int N, int C, int Hp,
                                  int Wp, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int dh, int dw,
                                  int img, float lo, float hi);
