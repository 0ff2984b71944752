/* The whole kernel library. Generated model code includes this one header; every kernel is
 * `static`, so the linker keeps only what a model calls. */
#pragma once
#include "wt_base.h"
#include "wt_matmul.h"
#include "wt_norm.h"
#include "wt_conv.h"
#include "wt_pool.h"
