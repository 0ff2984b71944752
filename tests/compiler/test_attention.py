"""Fused attention: the pattern pass, the reference interpreter and the wt_attention_f32 kernel against torch.

Shapes cover head dims 1..80 (odd ones too), Lq != Lk, lengths that are not multiples of the 4-row or
key tiles nor of the 128-row query chunk, float / bool / key-padding masks, causal, fully masked rows
(torch gives 0 through scaled_dot_product_attention and NaN through a plain softmax) and a dynamic
sequence length. The HF models are checked at the IR level here; tests/compiler/test_zoo.py and
test_minilm.py run them (now through the fused kernel) in wasm.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

import wasm_torch
from wasm_torch.compiler import lower
from wasm_torch.compiler.check import reference_outputs
from wasm_torch.compiler.ir.interp import run
from wasm_torch.compiler.passes.strided_view import View
from wasm_torch.zoo import minilm
from wasm_torch.zoo.models import build

NEG = float("-inf")

# (B, H, Lq, Lk, D, Dv, mask kind, causal)
CONFIGS = [
    (1, 1, 1, 1, 1, 1, None, False),
    (2, 3, 5, 7, 3, 5, "float", False),
    (1, 2, 9, 9, 8, 8, None, True),
    (2, 1, 13, 6, 13, 1, "bool", False),
    (1, 4, 33, 33, 32, 32, "keypad", False),
    (1, 2, 17, 40, 17, 12, None, True),  # causal with Lq != Lk (top-left aligned)
    (1, 1, 130, 150, 64, 64, "float", False),  # two query chunks, two key tiles
    (1, 1, 21, 103, 80, 80, "bool", False),  # head dim 80: 96-key tiles, 7 leftover keys
]


def _mask(kind, B, Lq, Lk, g):
    if kind == "float":
        m = torch.randn(B, 1, Lq, Lk, generator=g)
        m[0, 0, Lq // 2] = NEG  # a fully masked row
        m[-1, 0, 0, ::2] = NEG  # a partially masked row
        return m
    if kind == "bool":
        m = torch.rand(Lq, Lk, generator=g) > 0.3
        m[:, 0] = True
        m[Lq - 1] = False  # a fully masked row
        return m
    if kind == "keypad":
        m = torch.zeros(B, 1, 1, Lk)
        m[..., Lk - 5 :] = NEG
        return m
    return None


def _inputs(g):
    xs = []
    for B, H, Lq, Lk, D, Dv, kind, _ in CONFIGS:
        xs += [torch.randn(B, H, Lq, D, generator=g), torch.randn(B, H, Lk, D, generator=g)]
        xs += [torch.randn(B, H, Lk, Dv, generator=g)]
        m = _mask(kind, B, Lq, Lk, g)
        if m is not None:
            xs.append(m)
    return tuple(xs)


class ManySDPA(nn.Module):
    """One F.scaled_dot_product_attention per config, so one compile covers every shape."""

    def forward(self, *xs):
        out, i = [], 0
        for *_, kind, causal in CONFIGS:
            q, k, v = xs[i : i + 3]
            mask = xs[i + 3] if kind else None
            i += 4 if kind else 3
            out.append(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal))
        return tuple(out)


class PlainAttention(nn.Module):
    """softmax(q kᵀ / √d + mask) v with torch.softmax: a fully masked row is NaN, not 0."""

    def forward(self, q, k, v, mask):
        s = torch.matmul(q, k.transpose(-1, -2)) / q.shape[-1] ** 0.5
        return torch.matmul(torch.softmax(s + mask, dim=-1), v)


def _ir(model, inputs, dynamic_shapes=None):
    return lower(model, inputs, dynamic_shapes)


def _close(got, want, atol=2e-5, rtol=1e-4):
    """Within atol + rtol·|want|, NaN where torch has NaN (pipeline.compare does not accept NaN outputs)."""
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def _check_interp(g, model, inputs):
    _close(
        run(g, {n: x.numpy() for n, x in zip(g.inputs, inputs, strict=True)}),
        reference_outputs(model, inputs),
    )


# ---- the pass and the reference interpreter (no toolchain) -------------------------------------------


def test_strided_view_reshape_permute_slice_and_symbols():
    # nn.MultiheadAttention: q is a 64-wide slice of the (L, B, 3·64) projection, split as (L, B·H, 16)
    v = View.contiguous((10, 2, 192)).slice(2, 64, 1, 64).reshape((10, 8, 16))
    assert v is not None and v.strides() is None  # the B·H axis (2 x 4) is not one stride...
    v = v.permute((1, 0, 2)).reshape((2, 4, 10, 16))  # ...until it is split again into (B, H)
    assert v.offset == 64 and v.strides() == [192, 16, 384, 1]
    seq = sympy.Symbol("seq", integer=True, positive=True)
    w = View.contiguous((2 * seq, 192)).reshape((2, seq, 192)).slice(2, 64, 1, 64).reshape((2, seq, 4, 16))
    assert w.offset == 64 and w.strides() == [192 * seq, 192, 16, 1]
    assert View.contiguous((seq, 4)).reshape((2, seq * 2)) is None  # seq is not known to be even


def test_pass_fires_on_sdpa_and_interpreter_matches_torch():
    g = torch.Generator().manual_seed(0)
    inputs = _inputs(g)
    ir = _ir(ManySDPA(), inputs)
    ops = ir.op_counts()
    assert ops.get("attention") == len(CONFIGS) and "softmax" not in ops and "matmul" not in ops
    causal = [n for n in ir.nodes if n.op == "attention" and n.attrs["causal"]]
    assert len(causal) == 2 and all(len(n.inputs) == 3 for n in causal)  # is_causal: no mask input
    _check_interp(ir, ManySDPA(), inputs)


def test_plain_softmax_gives_nan_rows_like_torch():
    g = torch.Generator().manual_seed(1)
    q, k, v = (
        torch.randn(2, 2, 6, 5, generator=g),
        torch.randn(2, 2, 9, 5, generator=g),
        torch.randn(2, 2, 9, 7),
    )
    mask = torch.zeros(2, 1, 6, 9)
    mask[0, 0, 2] = NEG
    mask[1, 0, :, 3:] = NEG
    ir = _ir(PlainAttention(), (q, k, v, mask))
    att = [n for n in ir.nodes if n.op == "attention"]
    assert len(att) == 1 and not att[0].attrs["safe"]
    got = run(ir, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "mask": mask.numpy()})[0]
    want = PlainAttention()(q, k, v, mask).numpy()
    assert np.isnan(want[0, :, 2]).all() and np.isnan(got[0, :, 2]).all()
    _close([got], [want])


def _mha(need_weights):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(24, 3, batch_first=True).eval()

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mha

        def forward(self, x, pad):
            out, w = self.m(x, x, x, key_padding_mask=pad, need_weights=need_weights)
            return (out, w) if need_weights else out

    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    return M().eval(), (torch.randn(2, 7, 24), pad)


def test_multihead_attention_fuses_and_reads_the_projection_directly():
    model, inputs = _mha(need_weights=False)
    ir = _ir(model, inputs)
    (att,) = [n for n in ir.nodes if n.op == "attention"]
    proj = {n.outputs[0]: n.op for n in ir.nodes}
    # q, k, v: views of in_proj + bias (the bias add is folded into the packed GEMM by fuse_epilogue)
    assert len(set(att.inputs[:3])) == 1 and proj[att.inputs[0]] in ("add", "matmul_packed")
    _check_interp(ir, model, inputs)


def test_pass_leaves_attention_alone_when_the_weights_are_used():
    model, inputs = _mha(need_weights=True)  # the averaged attention weights are an output
    ir = _ir(model, inputs)
    assert "attention" not in ir.op_counts() and ir.op_counts()["softmax"] == 1
    _check_interp(ir, model, inputs)

    class ReturnsProbs(nn.Module):
        def forward(self, q, k, v):
            p = torch.softmax(q @ k.transpose(-1, -2) * 0.5, -1)
            return p @ v, p

    x = (torch.randn(1, 2, 4, 3), torch.randn(1, 2, 5, 3), torch.randn(1, 2, 5, 3))
    assert "attention" not in _ir(ReturnsProbs(), x).op_counts()

    class ScaleAfterMask(nn.Module):  # (qkᵀ + mask)·c also scales the mask: not the fused op's formula
        def forward(self, q, k, v, m):
            return torch.softmax((q @ k.transpose(-1, -2) + m) * 0.5, -1) @ v

    assert "attention" not in _ir(ScaleAfterMask(), (*x, torch.randn(4, 5))).op_counts()


@pytest.mark.parametrize("name", ["bert", "gpt2", "transformer_encoder", "vit"])
def test_pass_fires_once_per_layer_on_zoo_transformers(name):
    model, inputs, dyn = build(name)
    ir = _ir(model, inputs, dyn)
    assert ir.op_counts().get("attention") == 2  # two layers each
    assert "softmax" not in ir.op_counts()
    if name in ("bert", "gpt2"):  # the head-split and merge permutes are gone
        assert "permute" not in ir.op_counts()
    if name == "gpt2":  # and the q/k/v slices of the fused c_attn projection
        assert "slice" not in ir.op_counts()
    _check_interp(ir, model, inputs)
    if dyn:  # the same graph at another sequence length
        g = torch.Generator().manual_seed(3)
        ids = torch.randint(0, 500, (2, 29), generator=g)
        mask = torch.ones(2, 29, dtype=torch.long)
        mask[0, 20:] = 0
        _check_interp(ir, model, (ids, mask))


@pytest.mark.slow
def test_pass_fires_once_per_layer_on_minilm():
    model, tok = minilm()
    enc = tok(["fused attention in six layers"], return_tensors="pt")
    seq = Dim("seq", min=2, max=256)
    ir = _ir(
        model, (enc["input_ids"], enc["attention_mask"]), {"input_ids": {1: seq}, "attention_mask": {1: seq}}
    )
    ops = ir.op_counts()
    assert ops.get("attention") == 6 and "softmax" not in ops and "permute" not in ops


# ---- the kernel, in wasm ------------------------------------------------------------------------------


@pytest.mark.toolchain
@pytest.mark.wasm
def test_kernel_matches_torch_over_shapes_and_masks(tmp_path):
    g = torch.Generator().manual_seed(0)
    art = wasm_torch.compile(ManySDPA(), _inputs(g), tmp_path / "many")  # validated on these inputs
    assert art.report["ops"].get("attention") == len(CONFIGS)
    m = wasm_torch.load(art)
    for seed in (1, 2):  # and on fresh ones
        inputs = _inputs(torch.Generator().manual_seed(seed))
        got = m(*[x.numpy() for x in inputs])
        _close(list(got), reference_outputs(ManySDPA(), inputs))


@pytest.mark.toolchain
@pytest.mark.wasm
def test_kernel_nan_rows_and_dynamic_length(tmp_path):
    L = Dim("L", min=2, max=300)
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 2, 10, 24, generator=g) for _ in range(3))
    mask = torch.zeros(1, 1, 10, 10)
    dyn = {"q": {2: L}, "k": {2: L}, "v": {2: L}, "mask": {2: L, 3: L}}
    art = wasm_torch.compile(PlainAttention(), (q, k, v, mask), tmp_path / "plain", dynamic_shapes=dyn)
    assert art.report["ops"] == {"attention": 1}
    m = wasm_torch.load(art)
    for n in (2, 7, 128, 131, 300):  # 300: three query chunks and three 128-key tiles
        q, k, v = (torch.randn(1, 2, n, 24, generator=g) for _ in range(3))
        mask = torch.randn(1, 1, n, n, generator=g)
        mask[0, 0, n // 2] = NEG  # fully masked: NaN in torch
        mask[0, 0, 0, 1:] = NEG  # one visible key
        want = PlainAttention()(q, k, v, mask).numpy()
        got = m(q.numpy(), k.numpy(), v.numpy(), mask.numpy())
        assert np.isnan(got[0, :, n // 2]).all() and np.isnan(want[0, :, n // 2]).all()
        np.testing.assert_allclose(got[0, :, 0], v[0, :, 0].numpy(), rtol=1e-6, atol=1e-6)  # exactly v[0]
        _close([got], [want])


@pytest.mark.toolchain
@pytest.mark.wasm
def test_kernel_causal_dynamic_length(tmp_path):
    class Causal(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    L = Dim("L", min=2, max=200)
    g = torch.Generator().manual_seed(5)
    x = tuple(torch.randn(2, 3, 9, 16, generator=g) for _ in range(3))
    art = wasm_torch.compile(Causal(), x, tmp_path / "causal", dynamic_shapes={n: {2: L} for n in "qkv"})
    assert art.report["ops"] == {"attention": 1}  # the causal mask subgraph is gone too
    m = wasm_torch.load(art)
    for n in (2, 5, 133, 200):
        x = tuple(torch.randn(2, 3, n, 16, generator=g) for _ in range(3))
        got = m(*[t.numpy() for t in x])
        _close([got], [Causal()(*x).numpy()])
