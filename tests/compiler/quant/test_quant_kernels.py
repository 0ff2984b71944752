"""The fp16 and int8 kernels against NumPy integer references, over edge shapes, on every build.

Each test compiles one IR graph holding many cases (not a torch model), runs it on the plain and
relaxed-SIMD builds at 1-3 threads, and compares every output with the reference interpreter (the
ops' NumPy meaning: ops/quant.py, ops/quant_format.py) BIT FOR BIT: the int8 kernels sum exactly in
int32 and dequantize in a fixed float32 order, so the relaxed dot product, SIMD128's dot_i16x8, and
the thread split must not change one bit. NaN positions must match (their bits may not).
fp16 kernels are compared with the float32 kernels run on the same weights rounded to half.
"""

from __future__ import annotations

import numpy as np
import pytest

from wasm_torch.compiler.ir import Graph, Node
from wasm_torch.compiler.ir.graph import TensorType
from wasm_torch.compiler.ops.quant import conv8_layout, scratch_layout
from wasm_torch.compiler.ops.quant_format import (
    W7,
    W7_BIAS,
    W8,
    conv_channel_pad,
    pack_conv_q8,
    pack_gemm_q8,
    pad_to,
    q8_params,
    quantize_channels,
    quantize_rows,
    unpack_conv_q8,
    unpack_gemm_q8,
)
from wasm_torch.compiler.passes.pack_conv import pack_conv_weights
from wasm_torch.compiler.passes.pack_weights import pack
from wasm_torch.compiler.passes.shapes import propagate_shapes

from .harness import assert_bits, build, outputs, reference

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]


class G:
    """A graph under construction: inputs with values, constants, nodes (types inferred at the end)."""

    def __init__(self) -> None:
        self.inputs: dict[str, np.ndarray] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.types: dict[str, TensorType] = {}
        self.nodes: list[Node] = []
        self.outputs: list[str] = []

    def input(self, name: str, x: np.ndarray, dtype: str = "f32") -> str:
        self.inputs[name] = x
        self.types[name] = TensorType(dtype, x.shape)
        return name

    def const(self, name: str, x: np.ndarray, dtype: str) -> str:
        self.consts[name] = np.ascontiguousarray(x)
        self.types[name] = TensorType(dtype, x.shape)
        return name

    def node(self, op: str, ins: tuple[str, ...], outs: tuple[str, ...], attrs: dict, keep: tuple[str, ...] = ()) -> None:
        for o in outs:
            self.types[o] = TensorType("f32", ())  # filled in by propagate_shapes
        self.nodes.append(Node(op, ins, outs, attrs))
        self.outputs += list(keep or outs[:1])

    def graph(self) -> Graph:
        g = Graph(tuple(self.inputs), tuple(self.outputs), tuple(self.nodes), dict(self.types), dict(self.consts))
        return propagate_shapes(g)


def _compare(g: Graph, inputs: list[np.ndarray], tmp_path, what: str) -> dict:
    folder = build(g, tmp_path / "art")
    want = reference(g, inputs)
    runs = outputs(folder, inputs)
    for run, got in runs.items():
        for k, (a, b) in enumerate(zip(got, want, strict=True)):
            nan = np.isnan(b) if b.dtype.kind == "f" else np.zeros(b.shape, bool)
            assert np.array_equal(np.isnan(a) if a.dtype.kind == "f" else nan, nan), (what, run, g.outputs[k])
            assert_bits(np.where(nan, 0, a).astype(a.dtype), np.where(nan, 0, b).astype(b.dtype), f"{what} {run} {g.outputs[k]}")
    return runs


# ---- int8 GEMM ------------------------------------------------------------------------------------
GEMM_SHAPES = [  # (M, K, N): odd rows, K not a multiple of 4 or 16, partial panels, one column
    (1, 1, 1), (1, 4, 16), (2, 3, 5), (3, 5, 17), (5, 16, 33), (7, 37, 100), (17, 64, 8), (130, 384, 40),
    (2, 1000, 3), (64, 128, 160),
]


def _gemm_case(b: G, rng: np.random.Generator, k: int, m: int, kk: int, n: int, bias: bool, act: str | None,
               wbias: int = 0) -> None:
    x = rng.standard_normal((m, kk)).astype(np.float32) * rng.choice([0.01, 1.0, 300.0])
    if m >= 3:  # special rows: zeros, all negative, one huge value among tiny ones
        x[0] = 0.0
        x[1] = -np.abs(x[1])
        x[2, :] = 1e-3
        x[2, kk // 2] = 1e4
    if m >= 5:
        x[3] = np.abs(x[3])  # all positive: zero point 0
        x[4, 0] = np.nan  # a NaN row: scale NaN, outputs NaN
    w = rng.standard_normal((kk, n)).astype(np.float32)
    if n > 2:
        w[:, 1] = 0.0  # a column of zeros: scale 0
    q, ws = quantize_channels(w, axis=1, qmax=W7 if wbias else W8)
    npad = -(-n // 16) * 16
    kp = -(-kk // 4) * 4
    ins = [
        b.input(f"x{k}", x),
    ]
    qn, sn, zn = f"q{k}", f"s{k}", f"z{k}"
    b.node("q8_rows", (ins[0],), (qn, sn, zn), {"kp": kp}, keep=(qn, sn, zn))
    consts = [
        b.const(f"w{k}", pack_gemm_q8(q, wbias), "i8"),
        b.const(f"ws{k}", pad_to(ws, npad), "f32"),
        b.const(f"wsum{k}", pad_to(q.astype(np.int32).sum(0, dtype=np.int32), npad), "i32"),
    ]
    if bias:
        consts.append(b.const(f"b{k}", rng.standard_normal(n).astype(np.float32), "f32"))
    attrs = {"n": n, "k": kk, "wbias": wbias, **({"act": act} if act else {})}
    b.node("matmul_q8", (qn, sn, zn, *consts), (f"y{k}",), attrs)


@pytest.mark.parametrize("wbias", [0, W7_BIAS], ids=["8bit", "7bit-relaxed-dot"])
def test_gemm_q8_matches_the_integer_reference_bit_for_bit(tmp_path, wbias):
    """8-bit weights: SIMD128 dot_i16x8 in every build; 7-bit: the relaxed builds take the relaxed dot."""
    rng = np.random.default_rng(0)
    b = G()
    for k, (m, kk, n) in enumerate(GEMM_SHAPES):
        _gemm_case(b, rng, k, m, kk, n, bias=k % 2 == 0, act="relu" if k == 3 else None, wbias=wbias)
    g = b.graph()
    runs = _compare(g, list(b.inputs.values()), tmp_path, "gemm_q8")
    assert len(runs) == 5


def test_gemm_q8_gelu_epilogue(tmp_path):
    """gelu / gelu_tanh fused after the dequantize: within float32 rounding of the reference's GELU."""
    rng = np.random.default_rng(1)
    b = G()
    _gemm_case(b, rng, 0, 9, 40, 33, True, "gelu")
    _gemm_case(b, rng, 1, 4, 16, 20, False, "gelu_tanh")
    g = b.graph()
    folder = build(g, tmp_path / "art")
    inputs = list(b.inputs.values())
    want = reference(g, inputs)
    for run, got in outputs(folder, inputs).items():
        for a, w in zip(got, want, strict=True):
            np.testing.assert_allclose(a, w, rtol=2e-6, atol=2e-6, equal_nan=True, err_msg=str(run))


def test_row_quantization_rule():
    """The reference rule itself, on the cases that matter: the range includes 0, codes stay in
    [-128, 127], a row of zeros has scale 0, zero points are integers in [0, 255], the row sums are
    the codes' sums, and dequantizing the codes gives back the row within half a step."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 50)).astype(np.float32)
    a[0] = 0
    a[1] = np.abs(a[1]) + 1  # all positive: zp 0, range [0, max]
    a[2] = -np.abs(a[2]) - 1  # all negative: zp 255
    c, s, z, csum = quantize_rows(a, 52)
    assert c.dtype == np.int16 and c.min() >= -128 and c.max() <= 127 and np.all(c[:, 50:] == 0)
    assert s[0] == 0 and z[1] == 0 and z[2] == 255 and np.array_equal(csum, c.sum(1))
    back = (c[:, :50].astype(np.float32) + 128 - z[:, None]) * s[:, None]
    assert np.all(np.abs(back - a) <= s[:, None] * 0.5001 + 1e-7)
    scale, inv, zp = q8_params(np.float32([-1.0, np.nan, 0.0]), np.float32([3.0, 1.0, np.inf]))
    assert scale[0] == np.float32(4.0) / np.float32(255) and np.isnan(scale[1]) and np.isnan(scale[2])
    assert zp[0] == round(255 / 4) and inv[1] == 0


def test_gemm_packing_round_trips():
    rng = np.random.default_rng(3)
    for k, n in [(1, 1), (3, 17), (37, 100), (64, 16)]:
        q = rng.integers(-W7, W7 + 1, (k, n)).astype(np.int8)
        wp = pack_gemm_q8(q, W7_BIAS)
        assert wp.shape == (-(-n // 16), -(-k // 4), 64)
        assert wp.min() >= 1 and wp.max() <= 127  # the relaxed dot's 7-bit operand
        assert np.array_equal(unpack_gemm_q8(wp, k, n, W7_BIAS), q)
        assert np.array_equal(unpack_gemm_q8(pack_gemm_q8(q), k, n), q)
        # the documented byte: panel p, group g, byte 16j + 4c + t = W[4g + t][16p + 4j + c] + 64
        for kk, nn in [(0, 0), (k - 1, n - 1)]:
            p, j, c = nn // 16, (nn % 16) // 4, nn % 4
            assert wp[p, kk // 4, 16 * j + 4 * c + kk % 4] == q[kk, nn] + 64
    for oc, cg, kh, kw, groups in [(4, 3, 3, 3, 1), (6, 5, 1, 1, 2), (3, 1, 5, 2, 3)]:
        q = rng.integers(-W7, W7 + 1, (oc, cg, kh, kw)).astype(np.int8)
        for wbias in (0, W7_BIAS):
            wp = pack_conv_q8(q, groups, wbias)
            assert np.array_equal(unpack_conv_q8(wp, oc, cg, (kh, kw), wbias), q)


# ---- int8 convolution -----------------------------------------------------------------------------
CONV_CASES = [  # (N, C, H, W, OC, (KH, KW), stride, padding, dilation, groups)
    (1, 3, 9, 11, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (2, 5, 7, 7, 7, (3, 3), (2, 2), (1, 1), (1, 1), 1),
    (1, 8, 5, 13, 16, (1, 1), (1, 1), (0, 0), (1, 1), 1),
    (1, 4, 6, 6, 3, (1, 1), (2, 2), (0, 0), (1, 1), 1),
    (1, 6, 10, 12, 6, (3, 3), (1, 1), (2, 2), (2, 2), 2),
    (1, 1, 1, 1, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1),
    (1, 3, 16, 16, 8, (4, 4), (4, 4), (0, 0), (1, 1), 1),  # a patch embedding: stride 4
    (1, 2, 8, 9, 9, (5, 2), (3, 1), (2, 0), (1, 2), 1),
    (1, 12, 4, 4, 20, (3, 3), (1, 1), (1, 1), (1, 1), 1),
]
DW_CASES = [  # (N, C, H, W, multiplier, (KH, KW), stride, padding, dilation)
    (1, 3, 9, 11, 1, (3, 3), (1, 1), (1, 1), (1, 1)),
    (2, 8, 7, 10, 1, (3, 3), (2, 2), (1, 1), (1, 1)),
    (1, 4, 12, 13, 2, (5, 5), (1, 1), (2, 2), (1, 1)),
    (1, 5, 6, 21, 1, (3, 3), (3, 3), (0, 0), (2, 2)),
    (1, 2, 5, 5, 1, (1, 1), (1, 1), (0, 0), (1, 1)),
    (1, 3, 8, 8, 1, (2, 3), (2, 1), (1, 0), (1, 1)),
]


def _conv_node(b: G, rng: np.random.Generator, k: int, case: tuple, depthwise: bool, static: bool, act: str | None,
               wbias: int = 0) -> None:
    if depthwise:
        n, c, h, w_, mult, kernel, stride, padding, dilation = case
        oc, groups = c * mult, c
    else:
        n, c, h, w_, oc, kernel, stride, padding, dilation, groups = case
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    if k % 3 == 1:
        x = np.abs(x)  # post-ReLU inputs: zero point 0
    if n > 1:
        x[1] *= 50.0  # images of different scales: each gets its own range
    w = rng.standard_normal((oc, c // groups, *kernel)).astype(np.float32)
    q, ws = quantize_channels(w, axis=0, qmax=W7 if wbias and not depthwise else W8)
    wsum = q.astype(np.int32).reshape(oc, -1).sum(1, dtype=np.int32)
    xin = b.input(f"x{k}", x)
    if depthwise:
        consts = [b.const(f"w{k}", q.reshape(oc, -1), "i8"), b.const(f"ws{k}", ws, "f32"), b.const(f"wsum{k}", wsum, "i32")]
    else:
        consts = [b.const(f"w{k}", pack_conv_q8(q, groups, wbias), "i8"), b.const(f"ws{k}", conv_channel_pad(ws, groups), "f32"),
                  b.const(f"wsum{k}", conv_channel_pad(wsum, groups), "i32")]
    if k % 2 == 0:
        consts.append(b.const(f"b{k}", rng.standard_normal(oc).astype(np.float32), "f32"))
    slack = 32 * stride[1] + 64
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups, "oc": oc,
             "kernel": kernel, "slack": slack, **({"act": act} if act else {}), **({} if depthwise else {"wbias": wbias})}
    if static:
        s, inv, zp = q8_params(np.float32([-1.5]), np.float32([2.0]))  # values beyond it saturate
        attrs["static"] = (float(s[0]), float(inv[0]), int(zp[0]))
    _, _, img = conv8_layout(TensorType("f32", x.shape), attrs, not depthwise)
    attrs["scratch"] = scratch_layout(n, img, slack)[1]
    b.node("dwconv2d_q8" if depthwise else "conv2d_q8", (xin, *consts), (f"y{k}", f"t{k}"), attrs)


@pytest.mark.parametrize(("static", "wbias"), [(False, 0), (True, 0), (False, W7_BIAS)],
                         ids=["dynamic-8bit", "static-8bit", "dynamic-7bit-relaxed-dot"])
def test_conv_q8_matches_the_integer_reference_bit_for_bit(tmp_path, static, wbias):
    rng = np.random.default_rng(4)
    b = G()
    for k, case in enumerate(CONV_CASES):
        _conv_node(b, rng, k, case, False, static, "relu6" if k == 2 else ("relu" if k == 4 else None), wbias)
    for k, case in enumerate(DW_CASES):
        _conv_node(b, rng, 100 + k, case, True, static, "relu6" if k == 1 else None)
    _compare(b.graph(), list(b.inputs.values()), tmp_path, "conv_q8")


# ---- fp16 -------------------------------------------------------------------------------------------
def test_f16_to_f32_is_exact_for_every_half(tmp_path):
    b = G()
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    table = b.const("t", halves.reshape(256, 256), "f16")
    ids = b.input("ids", np.arange(256, dtype=np.int64), "i64")
    b.node("index", (table, ids), ("rows",), {})
    b.outputs.clear()
    b.node("f16_to_f32", ("rows",), ("y",), {})
    b.types["rows"] = TensorType("f16", (256, 256))
    g = b.graph()
    runs = _compare(g, [np.arange(256, dtype=np.int64)], tmp_path, "f16_to_f32")
    y = runs[("simd128", 1)][0].ravel()
    ref = halves.astype(np.float32)
    finite = ~np.isnan(ref)
    assert np.array_equal(y[finite].view(np.uint32), ref[finite].view(np.uint32))  # +-0, subnormals, inf


def test_f16_kernels_equal_the_f32_kernels_on_rounded_weights(tmp_path):
    """matmul_f16 / conv2d_f16 against matmul_packed / conv2d_packed fed the same weights as float32:
    the same multiply-adds in the same order, so the same bits (K spans several conversion blocks)."""
    rng = np.random.default_rng(5)
    b = G()
    for k, (m, kk, n, act) in enumerate([(3, 5, 17, None), (9, 700, 40, "gelu"), (1, 16, 16, "relu"), (130, 64, 3, None)]):
        x = b.input(f"x{k}", rng.standard_normal((m, kk)).astype(np.float32))
        w16 = rng.standard_normal((kk, n)).astype(np.float16)
        bias = b.const(f"b{k}", rng.standard_normal(n).astype(np.float32), "f32")
        attrs = {"n": n, **({"act": act} if act else {})}
        b.node("matmul_f16", (x, b.const(f"wh{k}", pack(w16.astype(np.float32)).astype(np.float16), "f16"), bias), (f"yh{k}",), attrs)
        b.node("matmul_packed", (x, b.const(f"wf{k}", pack(w16.astype(np.float32)), "f32"), bias), (f"yf{k}",), attrs)
    for k, (c, oc, kernel, stride, pad, groups) in enumerate([(3, 5, (3, 3), (1, 1), (1, 1), 1), (8, 8, (1, 1), (1, 1), (0, 0), 2),
                                                             (4, 6, (3, 3), (2, 2), (0, 0), 1)]):
        x = b.input(f"cx{k}", rng.standard_normal((1, c, 9, 10)).astype(np.float32))
        w16 = rng.standard_normal((oc, c // groups, *kernel)).astype(np.float16)
        wp = pack_conv_weights(w16.astype(np.float32), groups)
        attrs = {"stride": stride, "padding": pad, "dilation": (1, 1), "groups": groups, "oc": oc, "kernel": kernel}
        b.node("conv2d_f16", (x, b.const(f"cwh{k}", wp.astype(np.float16), "f16")), (f"cyh{k}",), attrs)
        b.node("conv2d_packed", (x, b.const(f"cwf{k}", wp, "f32")), (f"cyf{k}", f"cs{k}"), {**attrs, "scratch": 65536 * 2})
    g = b.graph()
    folder = build(g, tmp_path / "art")
    inputs = list(b.inputs.values())
    names = list(g.outputs)
    for run, got in outputs(folder, inputs).items():
        out = dict(zip(names, got, strict=True))
        for name in names:
            if name.startswith(("yh", "cyh")):
                twin = name.replace("yh", "yf")
                assert_bits(out[name], out[twin], f"{run} {name}")
    ref = dict(zip(names, reference(g, inputs), strict=True))
    np.testing.assert_allclose(out["yh0"], ref["yh0"], rtol=1e-5, atol=1e-5)


def test_kernel_constants_match_the_python_side():
    import re

    from wasm_torch.compiler.build.zig import kernel_dir
    from wasm_torch.compiler.ops.quant_format import Q8_PANEL
    from wasm_torch.compiler.passes.quantize import Q8_CONV_MAX_GROUPS, Q8_MAX_TAPS

    src = "".join((kernel_dir() / f).read_text() for f in ("wt_q8.h", "wt_conv_q8.h"))

    def define(name: str) -> int:
        return int(re.search(rf"#define {name} (\d+)", src).group(1))

    assert define("WT_Q8_NR") == Q8_PANEL and define("WT_Q8_WBIAS") == W7_BIAS
    assert define("WT_Q8_MAX_GROUPS") == Q8_CONV_MAX_GROUPS
    assert "if (KH * KW > 64) __builtin_trap();" in src and Q8_MAX_TAPS == 64
