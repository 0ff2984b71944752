/* The kernel library as seen by generated model code: inline math from wt_base.h plus the
 * prototypes of the heavy kernels, which are compiled separately (kernels.c, -O3) and linked
 * in; --gc-sections drops every kernel a model does not call. */
#pragma once
#include "wt_base.h"

WT_KERNEL void wt_matmul_f32(float* out, const float* a, const float* w, const float* bias, int batch, int M,
                             int N, int K, int a_bstride, int w_bstride);
WT_KERNEL void wt_softmax_f32(float* out, const float* x, int outer, int n, int inner, int log_out);
WT_KERNEL void wt_layer_norm_f32(float* out, const float* x, const float* w, const float* b, int outer, int n,
                                 float eps);
WT_KERNEL void wt_conv2d_f32(float* out, const float* x, const float* w, const float* bias, int N, int C, int H,
                             int W, int OC, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw,
                             int dh, int dw, int groups);
WT_KERNEL void wt_pool2d_f32(float* out, const float* x, int NC, int H, int W, int OH, int OW, int kh, int kw,
                             int sh, int sw, int ph, int pw, int dh, int dw, int is_max, int count_include_pad,
                             int divisor_override);
WT_KERNEL void wt_adaptive_avg_pool2d_f32(float* out, const float* x, int NC, int H, int W, int OH, int OW);
WT_KERNEL void wt_gemm_packed_f32(float* out, const float* a, const float* wp, const float* bias, int batch,
                                  int M, int N, int K, int a_bstride);
