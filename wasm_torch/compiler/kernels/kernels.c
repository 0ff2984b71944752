/* Translation unit holding every heavy kernel; compiled once at -O3 and cached. */
#include "wt_kernels.h"
#include "wt_matmul.h"
#include "wt_gemm_packed.h"
#include "wt_norm.h"
#include "wt_attention.h"
#include "wt_conv.h"
#include "wt_dwconv.h"
#include "wt_pool.h"
