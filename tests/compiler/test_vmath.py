"""The SIMD128 math kernels (kernels/wt_vmath.h, wt_norm.h) against float64 torch.

A small C harness is linked with the kernel library and called directly through wasmtime, so many
shapes and a dense sweep cost one build. Every unary function is checked for accuracy (stated
bounds), for special values, and for bit-identity between the vector lanes and the scalar twins
(the tail loop): an element's result never depends on where it sits in the buffer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import wasmtime

from wasm_torch.compiler import CompileOptions
from wasm_torch.compiler.build import compile_c
from wasm_torch.config import settings

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]

HARNESS = r"""
#include "wt_kernels.h"
/* op k of OPS: f32x4 over whole vectors, then the scalar twin for the tail (what codegen emits), or
 * the scalar twin throughout */
#define OP(k, vf, sf)                                                                             \
    case k:                                                                                       \
        if (!scalar)                                                                              \
            for (; i + 4 <= n; i += 4) wasm_v128_store(out + i, vf(wasm_v128_load(x + i)));       \
        for (; i < n; i++) out[i] = sf(x[i]);                                                     \
        return;
WT_EXPORT void t_unary(float* out, const float* x, int n, int op, int scalar) {
    int i = 0;
    switch (op) {
        OP(0, wt_v_expf, wt_expf) OP(1, wt_v_tanhf, wt_tanhf) OP(2, wt_v_sigmoidf, wt_sigmoidf)
        OP(3, wt_v_siluf, wt_siluf) OP(4, wt_v_geluf, wt_geluf) OP(5, wt_v_gelu_tanhf, wt_gelu_tanhf)
        OP(6, wt_v_erff, wt_erff)
    }
}
WT_EXPORT void t_softmax(float* out, const float* x, int outer, int n, int inner, int log_out) {
    wt_softmax_f32(out, x, outer, n, inner, log_out);
}
WT_EXPORT void t_layer_norm(float* out, const float* x, const float* w, const float* b, int outer, int n,
                            float eps) {
    wt_layer_norm_f32(out, x, w, b, outer, n, eps);
}
"""

OPS = ["exp", "tanh", "sigmoid", "silu", "gelu", "gelu_tanh", "erf"]  # the cases of t_unary


class Harness:
    def __init__(self) -> None:
        engine = wasmtime.Engine()
        self.store = wasmtime.Store(engine)
        module = wasmtime.Module(engine, compile_c(HARNESS, settings(), CompileOptions()))
        ex = wasmtime.Instance(self.store, module, []).exports(self.store)
        self.ex, self.mem = ex, ex["memory"]
        self.base = (ex["__heap_base"].value(self.store) + 63) // 64 * 64

    def _put(self, arrays: list[np.ndarray], out_sizes: list[int]) -> tuple[list[int], list[int]]:
        ptrs, off = [], self.base
        for n in [a.size for a in arrays] + out_sizes:
            ptrs.append(off)
            off += (n * 4 + 63) // 64 * 64
        need = -(-off // 65536) - self.mem.size(self.store)
        if need > 0:
            self.mem.grow(self.store, need)
        for p, a in zip(ptrs, arrays, strict=False):
            self.mem.write(self.store, np.ascontiguousarray(a, np.float32).tobytes(), p)
        return ptrs[: len(arrays)], ptrs[len(arrays) :]

    def _get(self, ptr: int, n: int) -> np.ndarray:
        return np.frombuffer(self.mem.read(self.store, ptr, ptr + 4 * n), np.float32).copy()

    def unary(self, op: str, x: np.ndarray, scalar: bool = False) -> np.ndarray:
        (px,), (po,) = self._put([x], [x.size])
        self.ex["t_unary"](self.store, po, px, x.size, OPS.index(op), int(scalar))
        return self._get(po, x.size)

    def softmax(self, x: np.ndarray, outer: int, n: int, inner: int, log: bool) -> np.ndarray:
        (px,), (po,) = self._put([x], [x.size])
        self.ex["t_softmax"](self.store, po, px, outer, n, inner, int(log))
        return self._get(po, x.size)

    def layer_norm(self, x: np.ndarray, w: np.ndarray | None, b: np.ndarray | None, n: int) -> np.ndarray:
        arrays = [x] + [a for a in (w, b) if a is not None]
        ins, (po,) = self._put(arrays, [x.size])
        pw = ins[1] if w is not None else 0
        pb = ins[-1] if b is not None else 0
        self.ex["t_layer_norm"](self.store, po, ins[0], pw, pb, x.size // n, n, 1e-5)
        return self._get(po, x.size)


@pytest.fixture(scope="module")
def h() -> Harness:
    return Harness()


def _sweep() -> np.ndarray:
    tiny = np.float32(1.4e-45)
    edges = [0.0, -0.0, tiny, -tiny, 1e-40, -1e-40, 1.2e-38, -1.2e-38, 1e-20, -1e-20, 3.4e38, -3.4e38]
    edges += [np.inf, -np.inf, np.nan, 88.72283, 88.72284, 88.7229, -87.33, -103.972, -103.973, -104.0]
    edges += [0.84374994, 0.84375, -0.84375, 0.625, -0.625, 1.1932, -1.1932, 9.0, -9.0, 1e5, -1e5]
    mags = np.geomspace(1e-30, 1e3, 3000)
    dense = np.linspace(-12, 12, 48001)
    wide = np.linspace(-110, 110, 22001)
    return np.concatenate([edges, mags, -mags, dense, wide]).astype(np.float32)


def _reference(op: str, x: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(x.astype(np.float64))
    fn = {
        "exp": torch.exp,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "silu": F.silu,
        "gelu": F.gelu,
        "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"),
        "erf": torch.erf,
    }[op]
    return fn(t).numpy()


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Error in units of float32 spacing at the true value (2^-149 for subnormal results)."""
    spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


# (max ulps of the float64 result, max abs error / max(1, |x|)) per op. Ulps are counted where the
# result is well inside the normal floats (|y| >= TINY·max(1, |x|): silu = x·sigmoid(x) inherits the
# subnormal sigmoid's few bits); tinier results must be within TINY·max(1, |x|) absolute.
BOUNDS = {
    "exp": (1.0, None),
    "tanh": (2.0, None),
    "sigmoid": (2.5, None),
    "silu": (3.5, None),
    "erf": (None, 1e-7),
    "gelu": (None, 1.2e-7),
    "gelu_tanh": (None, 1.5e-7),
}
TINY = 2.0**-126


@pytest.mark.parametrize("op", OPS)
def test_unary_accuracy_and_special_values(h, op):
    x = _sweep()
    got = h.unary(op, x)
    want = _reference(op, x)
    with np.errstate(over="ignore"):
        want32 = want.astype(np.float32)  # what float32 can hold: beyond 3.4e38 is inf
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{op}: NaN positions")
    inf = np.isinf(want32)
    np.testing.assert_array_equal(got[inf], want32[inf], err_msg=f"{op}: infinities")
    ok = np.isfinite(want32)
    max_ulp, max_abs = BOUNDS[op]
    if max_ulp is not None:
        scale = TINY * np.maximum(1.0, np.abs(x.astype(np.float64)))
        normal = ok & (np.abs(want) >= scale)
        u = _ulps(got[normal], want[normal])
        assert u.max() <= max_ulp, (op, u.max(), x[normal][u.argmax()])
        tiny = ok & ~normal
        assert (np.abs(got[tiny] - want[tiny]) <= scale[tiny]).all(), op
    if max_abs is not None:
        e = np.abs(got[ok] - want[ok]) / np.maximum(1.0, np.abs(x[ok].astype(np.float64)))
        assert e.max() <= max_abs, (op, e.max(), x[ok][e.argmax()])


@pytest.mark.parametrize("op", OPS)
def test_vector_lanes_equal_scalar_tail(h, op):
    """Bit-identical: the vector path, the scalar twin, and every odd length (tails of 1, 2, 3)."""
    x = _sweep()
    vec = h.unary(op, x)

    def same_bits(a: np.ndarray, b: np.ndarray, what: str) -> None:  # NaN == NaN, whatever its sign bit
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
        np.testing.assert_array_equal(a[~np.isnan(a)].view(np.uint32), b[~np.isnan(b)].view(np.uint32), what)

    same_bits(vec, h.unary(op, x, scalar=True), "vector vs scalar twin")
    for n in (1, 2, 3, 5, 6, 7, 4001):
        same_bits(h.unary(op, x[-n:]), vec[-n:], f"n={n}")  # the last n land in other lanes / the tail


SOFTMAX_SHAPES = [(1, 1, 1), (3, 1, 1), (2, 5, 1), (1, 7, 1), (4, 8, 1), (2, 17, 1), (3, 127, 1), (1, 512, 1)]
SOFTMAX_SHAPES += [(2, 5, 2), (1, 3, 4), (2, 9, 5), (1, 1, 3), (3, 16, 7), (2, 6, 12), (1, 33, 9)]


@pytest.mark.parametrize("log", [False, True])
def test_softmax_many_shapes(h, log):
    g = torch.Generator().manual_seed(0)
    for outer, n, inner in SOFTMAX_SHAPES:
        x = (torch.randn(outer, n, inner, generator=g, dtype=torch.float64) * 5).float()
        if n > 2:
            x[0, 1, 0] = -np.inf  # a masked position
        want = (torch.log_softmax if log else torch.softmax)(x.double(), 1).numpy()
        got = h.softmax(x.numpy(), outer, n, inner, log).reshape(want.shape)
        fin = np.isfinite(want)
        assert np.array_equal(np.isfinite(got), fin), (outer, n, inner)
        err = (np.abs(got[fin] - want[fin]) / np.maximum(1.0, np.abs(want[fin]))).max()
        assert err <= 1e-6, (outer, n, inner, err)


def test_softmax_all_masked_rows_are_nan_like_torch(h):
    for outer, n, inner in [(2, 6, 1), (1, 9, 1), (2, 5, 4), (1, 3, 6)]:
        x = torch.randn(outer, n, inner)
        x[0] = -np.inf
        for log in (False, True):
            want = (torch.log_softmax if log else torch.softmax)(x, 1).numpy()
            got = h.softmax(x.numpy(), outer, n, inner, log).reshape(want.shape)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            assert np.isnan(got[0]).all()
            np.testing.assert_allclose(got[1:], want[1:], atol=2e-6)


def test_layer_norm_many_shapes(h):
    g = torch.Generator().manual_seed(1)
    for rows, n in [(1, 1), (3, 2), (2, 3), (4, 5), (1, 7), (5, 8), (2, 13), (3, 64), (2, 383), (1, 384)]:
        x = torch.randn(rows, n, generator=g, dtype=torch.float64) * 3 + 100  # an offset: cancellation test
        w, b = torch.randn(n, generator=g), torch.randn(n, generator=g)
        for ww, bb in [(w, b), (None, None), (w, None), (None, b)]:
            w64 = None if ww is None else ww.double()
            b64 = None if bb is None else bb.double()
            want = F.layer_norm(x, (n,), w64, b64, 1e-5).numpy()
            got = h.layer_norm(
                x.float().numpy(), None if ww is None else ww.numpy(), None if bb is None else bb.numpy(), n
            ).reshape(want.shape)
            assert np.abs(got - want).max() < 2e-4 * (1 + np.abs(want).max()), (rows, n)
