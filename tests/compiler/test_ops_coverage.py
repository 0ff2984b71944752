"""The ops added for model-zoo coverage, each against torch over edge cases (odd sizes, tails,
degenerate dims): the IR interpreter (before and after every pass) and the compiled wasm."""

from __future__ import annotations

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


def _setitem(x):
    y = x.clone()
    y[:, 1:3] = 0.5
    y[0, :, 2] = y[1, :, 0] * 2
    y[..., -2:] += 1
    return y


def _swin_mask(x):  # the attention mask of Swin's shifted windows, built by slice assignment
    m = torch.zeros(1, 8, 8)
    cnt = 0
    for h in (slice(0, -4), slice(-4, -2), slice(-2, None)):
        for w in (slice(0, -4), slice(-4, -2), slice(-2, None)):
            m[:, h, w] = cnt
            cnt += 1
    return x + torch.roll(m, shifts=(-2, 3), dims=(1, 2))


def _index_put(x, i):
    y = x.clone()
    y[i] = -1.0
    z = x.clone()
    z.index_put_((i,), torch.ones(4, 3), accumulate=True)
    w = x.clone()
    w[x > 0.5] = 0.0
    return y + z + w


def _scatters(x, i):
    s = x[:, :2] * 3
    return torch.cat(
        [
            x.scatter(1, i, s),
            x.scatter_add(1, i, s),
            x.scatter_reduce(1, i, s, "amax"),
            x.scatter_reduce(1, i, s, "sum", include_self=False),
            x.scatter_reduce(1, i, s, "prod"),
            x.scatter_reduce(1, i, s, "amin", include_self=False),
        ]
    )


class ConvNeXtHead(nn.Module):  # the pattern that gives torchvision's ConvNeXt its aten.as_strided
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(6)

    def forward(self, x):
        y = F.adaptive_avg_pool2d(x, 1)
        return self.norm(y.permute(0, 2, 3, 1)).flatten(1)


CASES = {
    # interpolation: every mode torch.export leaves as an op, sizes and factors, odd and degenerate sizes
    "nearest_x2": (lambda x: F.interpolate(x, scale_factor=2), (r(2, 3, 5, 7),)),
    "nearest_size": (lambda x: F.interpolate(x, size=(9, 4)), (r(1, 2, 6, 7),)),
    "nearest_factor_odd": (lambda x: F.interpolate(x, scale_factor=(1.7, 0.6)), (r(1, 2, 5, 9),)),
    "nearest_exact": (lambda x: F.interpolate(x, size=(11, 3), mode="nearest-exact"), (r(1, 3, 4, 7),)),
    "nearest_1d": (lambda x: F.interpolate(x, scale_factor=3, mode="nearest"), (r(2, 3, 5),)),
    "bilinear_factor": (lambda x: F.interpolate(x, scale_factor=1.7, mode="bilinear"), (r(2, 3, 5, 7),)),
    "bilinear_size": (lambda x: F.interpolate(x, size=(13, 6), mode="bilinear"), (r(1, 4, 7, 5),)),
    "bilinear_align": (
        lambda x: F.interpolate(x, size=(9, 17), mode="bilinear", align_corners=True),
        (r(1, 2, 4, 5),),
    ),
    "bilinear_down": (lambda x: F.interpolate(x, scale_factor=0.45, mode="bilinear"), (r(1, 2, 11, 9),)),
    "bilinear_from_1px": (
        lambda x: F.interpolate(x, size=(3, 5), mode="bilinear", align_corners=True)
        + F.interpolate(x, size=(1, 1), mode="bilinear"),
        (r(1, 2, 1, 1),),
    ),
    "linear_1d": (lambda x: F.interpolate(x, scale_factor=2.5, mode="linear"), (r(2, 3, 6),)),
    "bicubic": (lambda x: F.interpolate(x, size=(7, 9), mode="bicubic", align_corners=False), (r(1, 2, 4, 5),)),
    "upsample_module": (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), (r(1, 3, 8, 8),)),
    # transposed convolution
    "convT_stride2_outpad": (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), (r(2, 4, 5, 7),)),
    "convT_groups_dilation": (
        nn.ConvTranspose2d(4, 6, (3, 2), stride=(1, 3), padding=(2, 0), dilation=(2, 1), groups=2, bias=False),
        (r(1, 4, 6, 5),),
    ),
    "convT_k4s2_unet": (nn.ConvTranspose2d(5, 3, 4, stride=2, padding=1), (r(1, 5, 3, 4),)),
    "convT_1x1": (nn.ConvTranspose2d(3, 2, 1), (r(1, 3, 1, 1),)),
    "convT_1d": (nn.ConvTranspose1d(4, 3, 5, stride=3, padding=2, output_padding=1), (r(2, 4, 9),)),
    # norms over any axis
    "group_norm": (nn.GroupNorm(3, 6), (r(2, 6, 5, 3),)),
    "group_norm_1d_noaffine": (nn.GroupNorm(2, 4, affine=False), (r(3, 4, 7),)),
    "instance_norm": (nn.InstanceNorm2d(4, affine=True), (r(1, 4, 5, 6),)),
    "instance_norm_batch": (nn.InstanceNorm1d(3), (r(2, 3, 9),)),
    "rms_norm": (nn.RMSNorm(7), (r(2, 5, 7),)),
    "vector_norms": (
        lambda x: torch.cat(
            [
                x.norm(p=2, dim=1).flatten(),
                torch.linalg.vector_norm(x, ord=1, dim=(0, 2)).flatten(),
                torch.linalg.vector_norm(x, ord=float("inf"), dim=-1).flatten(),
                torch.linalg.vector_norm(x, ord=float("-inf")).flatten(),
                torch.linalg.vector_norm(x, ord=3, dim=2, keepdim=True).flatten(),
                torch.linalg.vector_norm(x.round(), ord=0, dim=1).flatten(),
                F.normalize(x, dim=-1).flatten(),
            ]
        ),
        (r(3, 4, 5),),
    ),
    # elementwise
    "pow_scalar_base": (lambda t: 10000 ** (t / 8) + 2.0 ** t.clamp(-3, 3), (r(4, 9),)),
    "fmod_round_trunc_sign": (
        lambda x: torch.fmod(x * 7, 1.5)
        + torch.fmod(x * 3, -2.0)
        + x.mul(4).round()
        + x.mul(4).trunc()
        + x.sign()
        + torch.round(x, decimals=1),
        (torch.cat([r(4, 9), torch.tensor([[0.5, -0.5, 1.5, -2.5, 0.0, -0.0, 3.0, 2.5, 1e-8]])]),),
    ),
    "fmod_int": (lambda i: torch.fmod(i - 6, 4) + torch.fmod(i, -3), (ri(13, 5, 3),)),
    "expm1_log2_elus": (
        lambda x: torch.expm1(x * 1e-3) * 1e3
        + torch.expm1(x)
        + torch.log2(x.abs() + 0.1)
        + F.elu(x, 0.7)
        + F.selu(x)
        + F.celu(x, 1.3),
        (r(5, 11),),
    ),
    "clamp_tensor_where_scalars": (
        lambda x, lo: x.clamp(min=lo, max=lo + 1) + torch.where(x > 0, 1.0, x) + torch.where(x > 0, x, -2),
        (r(3, 7), r(7)),
    ),
    # writes, strided views, reorderings
    "setitem_slices": (_setitem, (r(3, 4, 5),)),
    "swin_shift_mask": (_swin_mask, (r(2, 8, 8),)),
    "index_put": (_index_put, (r(5, 3), torch.tensor([4, 0, 2, 0]))),
    "scatters": (_scatters, (r(3, 5), torch.tensor([[0, 1], [2, 2], [4, 0]]))),
    "as_strided_convnext": (ConvNeXtHead(), (r(2, 6, 5, 5),)),
    "as_strided_explicit": (lambda x: torch.as_strided(x, (3, 4), (1, 3), 2) * 2, (r(4, 4),)),
    "flip_repeat_roll": (
        lambda x: torch.cat([x.flip(0, 2).flatten(), x.repeat(2, 1, 3).flatten(), x.roll(2, 1).flatten()]),
        (r(2, 3, 4),),
    ),
    "sort_argsort": (
        lambda x: torch.cat(
            [
                torch.sort(x, dim=1, descending=True).values.flatten(),
                torch.sort(x, dim=0, stable=True).indices.float().flatten(),
                torch.argsort(x, dim=-1).float().flatten(),
            ]
        ),
        (torch.cat([r(4, 7), torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0, 2.0, 2.0]])]),),
    ),
    "cumsum_gather_take": (
        lambda x, i: x.cumsum(0) + torch.take_along_dim(x, i, 1) + torch.gather(x, 1, i.expand(-1, 6)),
        (r(4, 6), ri(6, 4, 1)),
    ),
    "adaptive_max_pool": (nn.AdaptiveMaxPool2d((2, 3)), (r(1, 3, 6, 9),)),
    "pixel_shuffle_glu": (lambda x: F.glu(F.pixel_shuffle(x, 2), 1), (r(1, 8, 3, 5),)),
}


def _model(fn):
    return (fn if isinstance(fn, nn.Module) else Fn(fn)).eval()


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_matches_torch(name):
    fn, inputs = CASES[name]
    model = _model(fn)
    graph = from_torch(model, inputs)
    verify(graph)
    want = reference_outputs(model, inputs)
    named = {n: x.numpy() for n, x in zip(graph.inputs, inputs, strict=True)}
    res = compare(run(graph, named), want, 1e-5, 1e-4)
    assert res["ok"], res
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
