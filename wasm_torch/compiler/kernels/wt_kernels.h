/* The kernel library as seen by generated model code: inline math from wt_base.h plus the
 * prototypes of the heavy kernels, which are compiled separately (kernels.c, -O3) and linked
 * in; --gc-sections drops every kernel a model does not call. */
#pragma once
#include "wt_base.h"
#include "wt_vmath.h"
#include "wt_threads.h"
#include "wt_extra_math.h"
#include "wt_quant.h" /* fp16 / int8 weights: f16 conversion, kernel prototypes */

WT_KERNEL void wt_matmul_f32(float* out, const float* a, const float* w, const float* bias, int batch, int M,
                             int N, int K, int a_bstride, int w_bstride);
WT_KERNEL void wt_softmax_f32(float* out, const float* x, int outer, int n, int inner, int log_out);
WT_KERNEL void wt_layer_norm_f32(float* out, const float* x, const float* w, const float* b, int outer, int n,
                                 float eps);
WT_KERNEL void wt_conv2d_f32(float* out, const float* x, const float* w, const float* bias, int N, int C, int H,
                             int W, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw,
                             int dh, int dw, int groups, float lo, float hi);
WT_KERNEL void wt_conv2d_packed_f32(float* out, const float* x, const float* wp, const float* bias, float* scratch,
                                    int scratch_len, int N, int C, int H, int W, int OC, int KH, int KW, int OH,
                                    int OW, int sh, int sw, int ph, int pw, int dh, int dw, int groups, float lo,
                                    float hi);
WT_KERNEL void wt_dwconv2d_f32(float* out, const float* x, const float* w, const float* bias, float* scratch,
                               int scratch_len, int N, int C, int H, int W, int OC, int KH, int KW, int OH, int OW,
                               int sh, int sw, int ph, int pw, int dh, int dw, float lo, float hi);
WT_KERNEL void wt_pool2d_f32(float* out, const float* x, int NC, int H, int W, int OH, int OW, int kh, int kw,
                             int sh, int sw, int ph, int pw, int dh, int dw, int is_max, int count_include_pad,
                             int divisor_override);
WT_KERNEL void wt_adaptive_avg_pool2d_f32(float* out, const float* x, int NC, int H, int W, int OH, int OW);
WT_KERNEL void wt_gemm_packed_f32(float* out, const float* a, const float* wp, const float* bias, int batch,
                                  int M, int N, int K, int a_bstride);
WT_KERNEL void wt_gemm_packed_act_f32(float* out, const float* a, const float* wp, const float* bias, int batch,
                                      int M, int N, int K, int a_bstride, int act);

/* Fused attention (wt_attention.h): logical sizes, then per operand the element strides of batch, head and
 * row (the head dim is contiguous; the mask also has a key stride, 0 when broadcast). */
typedef struct {
    int B, H, Lq, Lk, D, Dv;
    int q_sb, q_sh, q_sl, k_sb, k_sh, k_sl, v_sb, v_sh, v_sl, o_sb, o_sh, o_sl;
    int m_sb, m_sh, m_sq, m_sk;
    float scale;
    int causal, safe;
} wt_attention_args;
WT_KERNEL void wt_attention_f32(float* out, const float* q, const float* k, const float* v, const float* mask,
                                const wt_attention_args* a);

/* Model-zoo coverage kernels: resize (wt_resize.h), transposed convolution (wt_conv_transpose.h). */
WT_KERNEL void wt_resize2d_f32(float* out, const float* x, int NC, int H, int W, int OH, int OW, int mode,
                               int align_corners, float scale_h, float scale_w, int32_t* scratch);
WT_KERNEL void wt_conv_transpose2d_f32(float* out, const float* x, const float* w, const float* bias, int N,
                                       int IC, int H, int W, int OC, int KH, int KW, int OH, int OW, int sh,
                                       int sw, int ph, int pw, int dh, int dw, int groups);

/* Attention over a KV cache (wt_kv_attention.h): sizes, the cache's capacity C and key stride CS. */
typedef struct {
    int B, T, Hq, Hkv, D, Dv, C, CS;
    float scale;
} wt_kv_attention_args;
WT_KERNEL void wt_kv_attention_f32(float* out, const float* q, const float* k, const float* v, const int64_t* past,
                                   float* kc, float* vc, const wt_kv_attention_args* a);
