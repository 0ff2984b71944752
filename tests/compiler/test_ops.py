"""Every op family, one small model each: the IR interpreter and the wasm module against torch."""

from __future__ import annotations

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


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


g = torch.Generator().manual_seed(0)
r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
ri = lambda hi, *s: torch.randint(0, hi, s, generator=g)  # noqa: E731

CASES = {
    "binary_broadcast": (lambda a, b: a * b + a / (b.abs() + 1) - b, (r(3, 1, 5), r(4, 1))),
    "unary_chain": (
        lambda x: (
            torch.sigmoid(x)
            + torch.tanh(x)
            + F.silu(x)
            + F.gelu(x)
            + torch.exp(-x.abs())
            + torch.log(x.abs() + 1)
            + torch.sqrt(x.abs())
            + torch.rsqrt(x.abs() + 1)
            + torch.erf(x)
        ),
        (r(4, 33),),
    ),
    "gelu_tanh_hardswish": (
        lambda x: (
            F.gelu(x, approximate="tanh")
            + F.hardswish(x)
            + F.hardsigmoid(x)
            + F.leaky_relu(x, 0.2)
            + F.relu6(x)
        ),
        (r(2, 50),),
    ),
    "trig_pow_clamp": (
        lambda x: torch.sin(x) * torch.cos(x) + x.pow(3) + x.clamp(-0.5, 0.7) + (x.abs() + 1) ** 0.37,
        (r(5, 7) * 4,),
    ),
    "compare_where": (lambda a, b: torch.where((a > b) & (a < 1) | (b == 0), a, b * 2), (r(3, 4), r(3, 4))),
    "int_math": (lambda i: (i * 3 + 1) // 2 - i % 3 + (i >= 4).long(), (ri(9, 3, 5),)),
    "reductions": (
        lambda x: torch.cat(
            [
                x.sum(-1),
                x.mean(1),
                x.amax(-1),
                x.amin(1),
                x.prod(1) * 0 + 1,
                x.max(dim=1).values,
                x.var(dim=1, keepdim=False),
            ]
        ),
        (r(4, 6),),
    ),
    "argmax_any": (
        lambda x: torch.stack([x.argmax(-1), (x > 1).any(-1).long(), (x > -3).all(-1).long()]),
        (r(3, 7),),
    ),
    "softmax_logsoftmax": (lambda x: F.softmax(x, dim=1) + F.log_softmax(x, dim=-1), (r(2, 5, 9),)),
    "layer_norm": (nn.LayerNorm(24), (r(3, 5, 24),)),
    "matmul_batched": (
        lambda a, b: torch.bmm(a, b) + (a @ b.transpose(1, 2).transpose(1, 2)),
        (r(3, 5, 7), r(3, 7, 9)),
    ),
    "linear_odd": (nn.Linear(13, 11), (r(7, 13),)),
    "linear_to_one": (nn.Linear(5, 1), (r(3, 5),)),  # a 1-element bias is a scalar passed by pointer
    "permute_expand_slice": (
        lambda x: (
            x.permute(2, 0, 1)[1:, :, ::2]
            + x[..., :1].permute(2, 0, 1)[:, :, ::2]
            + x[:1, -1:].expand(4, 5, 6).permute(2, 0, 1)[1:, :, ::2]
        ),
        (r(4, 5, 6),),
    ),
    "cat_split_select": (
        lambda x: torch.cat(list(torch.split(x, [2, 3], dim=1))[::-1], 1)[:, :, 2] + x[1, :, 2],
        (r(3, 5, 4),),
    ),
    "pad_cumsum": (lambda x: F.pad(x, (1, 2, 0, 1), value=0.5).cumsum(-1), (r(2, 3, 4),)),
    "embedding_gather_index": (
        lambda w, i: w[i] + torch.gather(w, 1, i[:, :1].expand(-1, 4) % 4)[..., None, :].sum(),
        (r(10, 4), ri(10, 3, 2)),
    ),
    "arange_full": (lambda x: x + torch.arange(x.shape[1]).float() + torch.full((1, 6), 2.0), (r(3, 6),)),
    "conv_grouped_dilated": (
        nn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2),
        (r(1, 4, 11, 9),),
    ),
    "conv_depthwise": (nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False), (r(2, 6, 7, 7),)),
    "conv1d": (nn.Conv1d(3, 5, 3, padding=1), (r(2, 3, 10),)),
    "pooling": (
        lambda x: torch.cat(
            [
                F.max_pool2d(x, 3, 2, 1).flatten(1),
                F.avg_pool2d(x, 2).flatten(1),
                F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False).flatten(1),
                F.adaptive_avg_pool2d(x, (3, 2)).flatten(1),
            ],
            1,
        ),
        (r(2, 3, 9, 8),),
    ),
    "batchnorm": (nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)), (r(2, 3, 5, 5),)),
    "topk_diagonal_log1p": (
        lambda x: torch.cat(
            [
                torch.topk(x, 3, dim=1).values.flatten(),
                torch.topk(x, 2, dim=0, largest=False).indices.float().flatten(),
                torch.diagonal(x).flatten(),
                torch.diagonal(x, 1).flatten(),
                torch.log1p(x.abs()).flatten(),
                F.softplus(x).flatten(),
            ]
        ),
        (r(5, 6),),
    ),
    "scatter_value": (lambda x, i: x.scatter(1, i, -2.0), (r(4, 6), ri(6, 4, 2))),
    "index_select_trailing": (lambda x, i: x.index_select(1, i) + x[:, i], (r(3, 6), ri(6, 4))),
}


def _model(fn):
    m = fn if isinstance(fn, nn.Module) else Fn(fn)
    if isinstance(m, nn.Sequential):  # give batch norm non-trivial statistics
        m[1].running_mean.uniform_(-1, 1)
        m[1].running_var.uniform_(0.5, 2)
    return m.eval()


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_matches_torch(name):
    fn, inputs = CASES[name]
    model = _model(fn)
    graph = from_torch(model, inputs)
    verify(graph)
    want = reference_outputs(model, inputs)
    named = {n: x.numpy() for n, x in zip(graph.inputs, inputs, strict=True)}
    assert compare(run(graph, named), want, 1e-5, 1e-4)["ok"]
    for pass_name, p in PASSES:  # a pass must not change what the interpreter computes
        graph = p(graph)
        verify(graph, pass_name)
    assert compare(run(graph, named), want, 1e-5, 1e-4)["ok"]


@pytest.mark.toolchain
@pytest.mark.parametrize("name", sorted(CASES))
def test_wasm_matches_torch(name, tmp_path):
    fn, inputs = CASES[name]
    model = _model(fn)
    art = wasm_torch.compile(model, inputs, tmp_path / name, atol=1e-5, rtol=1e-4)
    m = wasm_torch.load(art)
    got = m(*[x.numpy() for x in inputs])
    got = list(got) if isinstance(got, tuple) else [got]
    res = compare(got, reference_outputs(model, inputs), 1e-5, 1e-4)
    assert res["ok"], res


def test_math_functions_accuracy(tmp_path):
    """Our freestanding expf/logf/erff/tanhf/sin/cos against torch over a wide range."""
    x = torch.linspace(-20, 20, 4001)
    model = Fn(
        lambda x: torch.stack(
            [
                torch.exp(x.clamp(max=80)),
                torch.log(x.abs() + 1e-30),
                torch.erf(x),
                torch.tanh(x),
                torch.sin(x),
                torch.cos(x),
                torch.sigmoid(x),
            ]
        )
    )
    m = wasm_torch.load(wasm_torch.compile(model, (x,), tmp_path / "math", atol=0, rtol=1e-5))
    got = m(x.numpy())
    want = model(x).numpy()
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-6)
    assert rel.max() < 2e-6, rel.max(axis=1)
