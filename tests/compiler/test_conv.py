"""Convolution, depthwise convolution, pooling and the conv passes, against torch.

Many layers go into one module with one input each, so a single compile covers every kernel path:
packed GEMM (1x1 flat with and without a partial panel, strided, dilated, grouped, K and pixel
blocking), depthwise (the specialised 3x3 / 5x5 planes, the generic plane, the scalar reference for
stride > 2 or > 64 taps, channel multipliers), the reference direct kernel (runtime weights), and
pooling (vector interior, scalar edges, ceil_mode, count_include_pad, divisor_override, NaN).
"""

from __future__ import annotations

import importlib
import re
from importlib import resources

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wasm_torch
from wasm_torch.compiler.check import compare, reference_outputs
from wasm_torch.compiler.frontend import from_torch
from wasm_torch.compiler.ir import verify
from wasm_torch.compiler.ir.interp import run
from wasm_torch.compiler.passes import PASSES
from wasm_torch.compiler.passes.conv_bn import _per_channel, fold_conv_bn

pc = importlib.import_module("wasm_torch.compiler.passes.pack_conv")  # the module (the package exports the pass)

# (cin, cout, kernel, stride, padding, dilation, groups, bias, batch, H, W, post)
CONVS = [
    (17, 5, 1, 1, 0, 1, 1, True, 3, 9, 11, None),  # flat 1x1, 99 pixels: a partial panel
    (16, 24, 1, 1, 0, 1, 1, False, 1, 8, 8, "relu"),  # flat 1x1, no partial panel
    (5, 17, 1, 2, 0, 1, 1, True, 1, 13, 13, None),  # strided 1x1: packed
    (3, 16, 3, 1, 1, 1, 1, False, 3, 15, 17, "bn_relu"),
    (17, 8, 3, 2, 1, 1, 1, False, 1, 16, 16, "bn_relu6"),
    (5, 5, 3, 1, 0, 2, 1, True, 1, 13, 12, None),
    (8, 12, 3, 2, 3, 2, 1, True, 1, 11, 9, "relu6"),
    (5, 7, 5, 1, 2, 1, 1, True, 1, 12, 10, "relu6"),
    (3, 6, 5, 2, 0, 1, 1, True, 3, 17, 17, "bn"),
    (3, 16, 7, 2, 3, 1, 1, False, 1, 30, 30, "bn_relu"),  # a ResNet stem
    (64, 9, 3, 1, 1, 1, 1, True, 1, 20, 20, "relu"),  # K = 576 > KC: two k blocks; several pixel blocks
    (3, 4, 7, 1, 3, 2, 1, True, 1, 9, 14, None),
    (8, 12, 3, 1, 1, 1, 2, True, 1, 10, 10, None),  # grouped, 4 channels per group
    (12, 8, 1, 1, 0, 1, 4, True, 3, 7, 7, "relu"),  # grouped flat 1x1
    (9, 6, 3, 2, 1, 1, 3, False, 1, 9, 9, None),  # 2 output channels per group (< MR)
    (17, 17, 3, 1, 1, 1, 17, False, 3, 13, 15, "bn_relu6"),  # depthwise 3x3/1
    (24, 24, 3, 2, 1, 1, 24, True, 1, 14, 14, "relu"),  # depthwise 3x3/2
    (8, 8, 5, 1, 2, 1, 8, True, 1, 11, 9, None),  # depthwise 5x5/1
    (6, 6, 5, 2, 2, 1, 6, True, 1, 17, 13, "bn"),  # depthwise 5x5/2
    (5, 5, 3, 1, 2, 2, 5, True, 1, 10, 10, None),  # depthwise dilated: the generic plane
    (16, 16, 7, 2, 3, 1, 16, True, 1, 15, 15, None),  # depthwise 7x7: 49 taps, generic plane
    (5, 5, 3, 3, 1, 1, 5, True, 1, 13, 13, None),  # depthwise stride 3: the scalar reference
    (3, 3, 9, 1, 4, 1, 3, True, 1, 12, 12, None),  # depthwise 9x9 = 81 taps: the scalar reference
    (4, 8, 3, 1, 1, 1, 4, True, 1, 9, 9, "relu"),  # depthwise with a channel multiplier of 2
    (1, 4, 3, 1, 1, 1, 1, True, 3, 8, 8, None),  # one input channel: the depthwise kernel, multiplier 4
]


class Layer(nn.Module):
    def __init__(self, spec: tuple):
        super().__init__()
        cin, cout, k, s, p, d, g, bias, _, _, _, post = spec
        self.conv = nn.Conv2d(cin, cout, k, s, p, d, g, bias=bias)
        self.post = post or ""
        self.bn = nn.BatchNorm2d(cout) if "bn" in self.post else nn.Identity()
        if "bn" in self.post:  # non-trivial statistics, so folding them is checked
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.data.uniform_(0.5, 1.5)
            self.bn.bias.data.uniform_(-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if self.post.endswith("relu"):
            return F.relu(y)
        return F.relu6(y) if self.post.endswith("relu6") else y


class Convs(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(Layer(s) for s in CONVS)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = tuple(layer(x) for layer, x in zip(self.layers, xs, strict=False))
        x, w = xs[-2:]  # runtime weights: the reference direct kernel
        return (*outs, F.conv2d(x, w, stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2))


def conv_inputs(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(s[8], s[0], s[9], s[10], generator=g) for s in CONVS]
    return (*xs, torch.randn(2, 6, 11, 10, generator=g), torch.randn(4, 3, 3, 3, generator=g))


class Pools(nn.Module):
    def forward(self, x: torch.Tensor, odd: torch.Tensor, nan: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            F.max_pool2d(x, 3, 2, 1),
            F.max_pool2d(x, 2, 2),
            F.max_pool2d(x, 3, 1, 1),
            F.max_pool2d(odd, 3, 2, 1, ceil_mode=True),
            F.max_pool2d(odd, 2, 2, ceil_mode=True),
            F.max_pool2d(x, 3, 2, 1, dilation=2),
            F.max_pool2d(odd, 5, 3, 2),  # stride 3: scalar
            F.avg_pool2d(x, 2, 2),
            F.avg_pool2d(x, 3, 2, 1),
            F.avg_pool2d(odd, 3, 2, 1, count_include_pad=False),
            F.avg_pool2d(odd, 3, 1, 1, ceil_mode=True, count_include_pad=False),
            F.avg_pool2d(odd, 3, 2, 1, ceil_mode=True),
            F.avg_pool2d(x, 3, 2, 1, divisor_override=5),
            F.adaptive_avg_pool2d(odd, (3, 2)),
            F.adaptive_avg_pool2d(x, 1),
            F.max_pool2d(nan, 3, 2, 1),  # NaN propagates, in vector and scalar columns
            F.max_pool2d(nan, 2, 2),
        )


def pool_inputs(seed: int, nans: bool = True) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    nan = torch.randn(2, 3, 16, 20, generator=g)
    if nans:  # (pipeline.compare counts NaN == NaN as a mismatch, so compile without them)
        nan[0, 0, 5, 7] = nan[1, 2, 0, 0] = nan[0, 1, 15, 19] = float("nan")
    return torch.randn(3, 4, 16, 20, generator=g), torch.randn(1, 5, 15, 17, generator=g), nan


def assert_close(got: list[np.ndarray], want: list[np.ndarray], atol: float, rtol: float) -> None:
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"output {k}")


def _passed(model: nn.Module, inputs: tuple, until: str = "") -> tuple:
    """The graph after every pass (or after the pass named `until`), and the named inputs."""
    graph = from_torch(model, inputs)
    named = {n: x.numpy() for n, x in zip(graph.inputs, inputs, strict=True)}
    for name, p in PASSES:
        graph = p(graph)
        verify(graph, name)
        if name == until:
            break
    return graph, named


def test_conv_passes_pick_the_kernels_and_keep_the_meaning():
    torch.manual_seed(0)
    model, inputs = Convs().eval(), conv_inputs(1)
    graph, named = _passed(model, inputs)
    ops = graph.op_counts()
    n_dw = sum(1 for s in CONVS if (s[6] == s[0] and s[6] > 1) or s[0] == 1)
    assert ops["dwconv2d"] == n_dw
    assert ops["conv2d_packed"] == len(CONVS) - n_dw
    assert ops["conv2d"] == 1  # the runtime-weight conv
    # every BN and activation was folded into a conv
    assert not {"mul", "add", "relu", "clamp", "fused_elementwise"} & set(ops)
    acts = [n.attrs.get("act") for n in graph.nodes if n.op in ("dwconv2d", "conv2d_packed")]
    act_of = {"relu": "relu", "bn_relu": "relu", "relu6": "relu6", "bn_relu6": "relu6"}
    assert acts == [act_of.get(s[11]) for s in CONVS]
    res = compare(run(graph, named), reference_outputs(model, inputs), 1e-4, 1e-4)
    assert res["ok"], res


@pytest.mark.toolchain
@pytest.mark.wasm
def test_convs_match_torch(tmp_path):
    torch.manual_seed(0)
    model = Convs().eval()
    art = wasm_torch.compile(model, conv_inputs(1), tmp_path / "convs")
    m = wasm_torch.load(art)
    for seed in (2, 3):
        inputs = conv_inputs(seed)
        res = compare(list(m(*[x.numpy() for x in inputs])), reference_outputs(model, inputs), 1e-4, 1e-3)
        assert res["ok"], res


def test_pools_interpreter_matches_torch():
    model, inputs = Pools(), pool_inputs(1)
    graph, named = _passed(model, inputs)
    assert_close(run(graph, named), reference_outputs(model, inputs), 1e-6, 1e-5)


@pytest.mark.toolchain
@pytest.mark.wasm
def test_pools_match_torch(tmp_path):
    model = Pools()
    art = wasm_torch.compile(model, pool_inputs(1, nans=False), tmp_path / "pools", atol=1e-6, rtol=1e-5)
    m = wasm_torch.load(art)
    inputs = pool_inputs(2)
    got = list(m(*[x.numpy() for x in inputs]))
    assert_close(got, reference_outputs(model, inputs), 1e-6, 1e-5)
    assert np.isnan(got[-2]).any() and np.isnan(got[-1]).sum() == 3  # (and at torch's positions)


class ConvBn(nn.Module):
    def __init__(self, cin: int = 3, cout: int = 4):
        super().__init__()
        self.a, self.b = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_a, self.bn_b, self.bn_in = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout), nn.BatchNorm2d(cin)
        for bn in (self.bn_a, self.bn_b, self.bn_in):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
        self.spatial = nn.Parameter(torch.randn(1, 1, 6, 6))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self.a(self.bn_in(x))  # a BN before a conv stays elementwise
        z = self.b(F.relu(self.bn_a(y)))
        w = self.bn_b(z)
        return z, torch.relu(w) * self.spatial  # z is an output: bn_b cannot be folded into b


def test_fold_conv_bn_folds_only_what_it_may():
    torch.manual_seed(0)
    model, x = ConvBn().eval(), torch.randn(2, 3, 6, 6)
    want = reference_outputs(model, (x,))
    graph, named = _passed(model, (x,), until="fold_conv_bn")
    convs = [n for n in graph.nodes if n.op == "conv2d"]
    assert [n.attrs.get("act") for n in convs] == ["relu", None]
    assert graph.op_counts()["mul"] == 3 and graph.op_counts()["add"] == 2  # bn_in, bn_b, * spatial
    assert graph.op_counts()["relu"] == 1
    assert compare(run(graph, named), want, 1e-5, 1e-4)["ok"]
    graph, named = _passed(model, (x,))
    assert compare(run(graph, named), want, 1e-5, 1e-4)["ok"]


def test_fold_conv_bn_keeps_the_interpreter_result():
    torch.manual_seed(1)
    model, x = (
        nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU6()).eval(),
        torch.randn(1, 3, 8, 8),
    )
    model[1].running_var.uniform_(0.5, 2)
    graph = from_torch(model, (x,))
    for _, p in PASSES[:2]:  # constant folding and simplify: BN is now mul/add by constants
        graph = p(graph)
    folded = fold_conv_bn(graph)
    verify(folded, "fold_conv_bn")
    assert [n.op for n in folded.nodes] == ["conv2d"] and folded.nodes[0].attrs["act"] == "relu6"
    named = {graph.inputs[0]: x.numpy()}
    before, after = run(graph, named), run(folded, named)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5, atol=1e-6)


def test_per_channel_constants():
    assert _per_channel(np.ones((4, 1, 1), np.float32), 4) is not None
    assert _per_channel(np.ones((1, 4, 1, 1), np.float32), 4) is not None
    assert _per_channel(np.float32(2.0).reshape(()), 4).tolist() == [2.0] * 4
    assert _per_channel(np.ones((1, 1, 3, 3), np.float32), 4) is None  # varies over space
    assert _per_channel(np.ones((2, 4, 1, 1), np.float32), 4) is None  # varies over the batch


def test_weight_packing_round_trip():
    w = np.arange(10 * 3 * 2 * 2, dtype=np.float32).reshape(10, 3, 2, 2)  # 2 groups of 5 output channels
    p = pc.pack_conv_weights(w, 2)
    assert p.shape == (2, 2, 12, pc.MR)
    unpacked = p.transpose(0, 1, 3, 2).reshape(2, 2 * pc.MR, 12)
    np.testing.assert_array_equal(unpacked[:, :5].reshape(w.shape), w)
    assert not unpacked[:, 5:].any()


def test_kernel_constants_match_the_pass():
    src = (resources.files("wasm_torch.compiler") / "kernels").joinpath
    conv, dw = src("wt_conv.h").read_text(), src("wt_dwconv.h").read_text()
    defines = dict(re.findall(r"#define (WT_\w+) (\d+)", conv + dw))
    assert int(defines["WT_CONV_MR"]) == pc.MR
    assert int(defines["WT_CONV_KC"]) == pc.KC
    assert int(defines["WT_CONV_BUDGET"]) == pc.BUDGET
    assert int(defines["WT_DW_SLACK"]) == pc.DW_SLACK
