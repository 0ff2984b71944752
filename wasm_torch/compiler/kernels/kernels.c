/* Translation unit holding every heavy kernel; compiled once at -O3 and cached. */
#include "wt_kernels.h"
#include "wt_threadpool.h"
#include "wt_matmul.h"
#include "wt_gemm_packed.h"
#include "wt_norm.h"
#include "wt_attention.h"
#include "wt_kv_attention.h"
#include "wt_conv.h"
#include "wt_dwconv.h"
#include "wt_pool.h"
#include "wt_resize.h"
#include "wt_conv_transpose.h"
#include "wt_tasks.h" /* keep last: the default task dispatcher names every kernel above */
