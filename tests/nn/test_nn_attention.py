"""SDPA and multi-head attention against PyTorch's own implementations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wasm_torch.nn.attention import (
    MultiHeadAttention,
    ScaledDotProductAttention,
    causal_mask,
    masked_softmax,
    scaled_dot_product_attention,
)


def _qkv(b=2, h=3, tq=7, tk=9, d=8, dv=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, tq, d, generator=g, dtype=torch.float64),
        torch.randn(b, h, tk, d, generator=g, dtype=torch.float64),
        torch.randn(b, h, tk, dv, generator=g, dtype=torch.float64),
    )


def test_sdpa_matches_torch_unmasked_and_scaled():
    q, k, v = _qkv()
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, scale=0.3), F.scaled_dot_product_attention(q, k, v, scale=0.3)
    )


@pytest.mark.parametrize("tq,tk", [(9, 9), (5, 9), (9, 5)])
def test_sdpa_causal_matches_torch(tq, tk):
    q, k, v = _qkv(tq=tq, tk=tk)
    ours = scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_sdpa_bool_and_float_masks_match_torch():
    q, k, v = _qkv(seed=1)
    g = torch.Generator().manual_seed(5)
    keep = torch.rand(2, 1, 7, 9, generator=g) > 0.4
    keep[..., 0] = True  # every query keeps at least one key (torch would give NaN otherwise)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, keep), F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    )
    bias = torch.randn(7, 9, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, bias), F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    )
    # bool mask combined with causal: torch refuses both at once, so build the oracle mask by hand
    both = keep & causal_mask(7, 9)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, keep, is_causal=True),
        F.scaled_dot_product_attention(q, k, v, attn_mask=both),
    )


def test_fully_masked_query_gives_zeros_not_nan():
    q, k, v = _qkv()
    keep = torch.ones(7, 9, dtype=torch.bool)
    keep[3] = False
    out = scaled_dot_product_attention(q, k, v, keep)
    assert torch.isfinite(out).all()
    assert (out[:, :, 3] == 0).all()
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.testing.assert_close(out[:, :, [0, 1, 2, 4, 5, 6]], ref[:, :, [0, 1, 2, 4, 5, 6]])
    p = masked_softmax(torch.full((2, 4), float("-inf")))
    assert (p == 0).all()


def test_sdpa_module_uses_config():
    q, k, v = _qkv()
    m = ScaledDotProductAttention(causal=True)
    torch.testing.assert_close(m(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True))


def _copy_into_torch_mha(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    cfg = ours.config
    ref = nn.MultiheadAttention(cfg.dim, cfg.heads, bias=cfg.bias, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.o_proj.weight)
        ref.out_proj.bias.copy_(ours.o_proj.bias)
    return ref.eval()


def test_multihead_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = MultiHeadAttention(dim=32, heads=4).double()
    ref = _copy_into_torch_mha(ours)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 10, 32, generator=g, dtype=torch.float64)
    mem = torch.randn(3, 6, 32, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x, x, x, need_weights=False)[0])
    torch.testing.assert_close(ours(x, mem), ref(x, mem, mem, need_weights=False)[0])
    # key padding: ours takes True = real key, torch takes True = padding
    key_mask = torch.ones(3, 6, dtype=torch.bool)
    key_mask[0, 4:] = False
    key_mask[2, 1:3] = False
    torch.testing.assert_close(
        ours(x, mem, key_mask=key_mask), ref(x, mem, mem, key_padding_mask=~key_mask, need_weights=False)[0]
    )


def test_multihead_causal_matches_torch():
    torch.manual_seed(2)
    ours = MultiHeadAttention(dim=24, heads=3, causal=True).double()
    ref = _copy_into_torch_mha(ours)
    x = torch.randn(2, 11, 24, dtype=torch.float64)
    cm = ~causal_mask(11, 11)  # torch: True = blocked
    torch.testing.assert_close(ours(x), ref(x, x, x, attn_mask=cm, need_weights=False)[0])


def test_multihead_heads_are_independent_of_batch():
    torch.manual_seed(3)
    m = MultiHeadAttention(dim=16, heads=2)
    x = torch.randn(4, 5, 16)
    full = m(x)
    for b in range(4):
        torch.testing.assert_close(full[b : b + 1], m(x[b : b + 1]))


def test_config_validation():
    with pytest.raises(ValueError):
        MultiHeadAttention(dim=10, heads=3)
    with pytest.raises(TypeError):
        MultiHeadAttention(dims=10)
