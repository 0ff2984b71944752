/* Activations for fused GEMM epilogues (passes/fuse_epilogue.py): relu, gelu (exact erf form,
 * torch's default) and gelu_tanh, applied four lanes at a time to results before they leave L1.
 *
 * The GELUs are the SIMD functions of wt_vmath.h (one implementation for fused and unfused code).
 * Accuracy against float64 is tested through a compiled Linear + activation
 * (tests/compiler/test_gemm.py::test_epilogue_activation_accuracy: <= 1e-6 * max(1, |y|)).
 */
#pragma once
#include "wt_base.h"
#include "wt_vmath.h"

/* The codes passed to wt_gemm_packed_act_f32; ir/ops.py GEMM_ACTS maps attr names to them. */
enum { WT_ACT_NONE = 0, WT_ACT_RELU = 1, WT_ACT_GELU = 2, WT_ACT_GELU_TANH = 3 };

WT_INLINE v128_t wt_act_apply(v128_t x, int act) {
    switch (act) {
    case WT_ACT_RELU: return wasm_f32x4_max(x, wasm_f32x4_splat(0.0f)); /* NaN stays NaN, like torch */
    case WT_ACT_GELU: return wt_v_geluf(x);
    case WT_ACT_GELU_TANH: return wt_v_gelu_tanhf(x);
    default: return x;
    }
}
