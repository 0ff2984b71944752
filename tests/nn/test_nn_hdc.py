"""HDC against closed-form expectations: 10,000 bits, near-orthogonality, bundle distance, clean-up,
and HDC attention's Hamming similarities against XOR/popcount and the hyperplane-hashing angle law."""

import math

import pytest
import torch

from wasm_torch.nn.hdc import (
    BYTES,
    DIM,
    HDCAttention,
    HDCMemory,
    bind,
    bundle,
    hamming_matrix,
    hamming_packed,
    pack,
    permute,
    random_hypervectors,
    similarity,
    unpack,
)

SIGMA = math.sqrt(0.25 / DIM)  # std of the normalised Hamming distance of independent fair bits


def gen(seed):
    return torch.Generator().manual_seed(seed)


def norm_ham(a, b):
    return (a ^ b).double().mean(-1)


def test_exactly_ten_thousand_bits_and_packing():
    x = random_hypervectors(5, gen(0))
    assert x.shape == (5, 10_000) and DIM == 10_000 and BYTES == 1250
    p = pack(x)
    assert p.shape == (5, 1250) and p.dtype == torch.uint8
    assert (unpack(p) == x).all()
    assert (permute(x, DIM) == x).all()  # the cycle is exactly 10,000 long …
    assert (permute(x, 1)[:, 0] == x[:, -1]).all()  # … and bit 9,999 wraps to bit 0
    popcount_py = torch.tensor(
        [[bin(int(a) ^ int(b)).count("1") for a, b in zip(p[i], p[0], strict=True)] for i in range(5)]
    ).sum(-1)
    assert (hamming_packed(p, p[:1]) == popcount_py).all()
    assert (hamming_matrix(x, x[:1]).squeeze(-1).long() == popcount_py).all()


def test_random_hypervectors_are_nearly_orthogonal():
    x = random_hypervectors(60, gen(1))
    h = hamming_matrix(x, x) / DIM
    off = h[~torch.eye(60, dtype=torch.bool)]
    assert abs(off.mean().item() - 0.5) < 3 * SIGMA / math.sqrt(off.numel() / 2)
    assert (off - 0.5).abs().max() < 5 * SIGMA
    assert abs(off.std().item() - SIGMA) < 0.1 * SIGMA
    sim = similarity(x[0], x[1])
    assert -0.05 < sim < 0.05 and similarity(x[0], x[0]) == 1 and similarity(x[0], ~x[0]) == -1


def test_bind_and_permute_properties():
    a, b, c = random_hypervectors(3, gen(2))
    assert (bind(bind(a, b), b) == a).all()  # self-inverse
    assert abs(norm_ham(bind(a, b), a) - 0.5) < 5 * SIGMA  # bound pair is unlike its parts
    assert norm_ham(bind(a, c), bind(b, c)) == norm_ham(a, b)  # distance preserved exactly
    assert norm_ham(permute(a, 7), permute(b, 7)) == norm_ham(a, b)
    assert abs(norm_ham(permute(a, 1), a) - 0.5) < 5 * SIGMA


@pytest.mark.parametrize("n", [3, 5, 7, 9, 15])
def test_bundle_distance_matches_closed_form(n):
    x = random_hypervectors(n, gen(n))
    s = bundle(x)
    expected = 0.5 - math.comb(n - 1, (n - 1) // 2) / 2**n  # P(member bit ≠ majority bit)
    member = norm_ham(s, x)
    std = math.sqrt(expected * (1 - expected) / DIM)
    assert (member - expected).abs().max() < 5 * std
    other = random_hypervectors(20, gen(100 + n))
    assert (norm_ham(s, other) - 0.5).abs().max() < 5 * SIGMA


def test_even_bundle_ties_use_the_tie_breaker():
    a, b, t = random_hypervectors(3, gen(3))
    s = bundle(torch.stack([a, b]), tie_breaker=t)
    agree = a == b
    assert (s[agree] == a[agree]).all() and (s[~agree] == t[~agree]).all()


def test_bundle_members_are_recovered_from_distractors():
    mem = HDCMemory(capacity=1000)
    items = random_hypervectors(1000, gen(4))
    mem.store(items)
    members = torch.arange(0, 1000, 67)[:15]
    idx, sims = mem.topk(bundle(items[members]), k=15)
    assert sorted(idx.tolist()) == members.tolist()
    assert sims.min() > 0.15  # members: sim ≈ 1 − 2·0.3953 = 0.21; non-members ≈ 0 ± 0.05


def test_key_value_record_recall_through_cleanup():
    g = gen(5)
    keys, values = random_hypervectors(21, g), random_hypervectors(21, g)
    mem = HDCMemory(capacity=100)
    mem.store(values)
    mem.store(random_hypervectors(50, g))  # distractors
    rec = HDCMemory.record(keys, values)
    recalled = mem.recall(rec, keys)
    assert (recalled == values).all()  # 21 / 21 pairs


def test_permutation_encodes_order():
    a, b, c = random_hypervectors(3, gen(6))

    def seq(*xs):
        return bundle(torch.stack([permute(x, i) for i, x in enumerate(xs)]))

    abc, cba = seq(a, b, c), seq(c, b, a)
    assert norm_ham(abc, seq(a, b, c)) == 0
    assert norm_ham(abc, cba) > 0.3  # same members, different order → different code


def test_hyperplane_codes_estimate_angles():
    att = HDCAttention(in_dim=16, seed=7)
    g = gen(8)
    x, y = torch.randn(40, 16, generator=g), torch.randn(40, 16, generator=g)
    theta = torch.arccos(torch.nn.functional.cosine_similarity(x, y).double())
    h = norm_ham(att.encode(x), att.encode(y))
    std = torch.sqrt(theta / math.pi * (1 - theta / math.pi) / DIM)
    assert ((h - theta / math.pi).abs() < 5 * std + 1e-9).all()


def test_attention_fast_matches_popcount_reference_and_oracle():
    cfg = dict(in_dim=8, beta=6.0, seed=9)
    fast, ref = HDCAttention(**cfg), HDCAttention(**cfg, reference=True)
    g = gen(10)
    q, k = torch.randn(2, 5, 8, generator=g), torch.randn(2, 7, 8, generator=g)
    v = torch.randn(2, 7, 3, generator=g, dtype=torch.float64)
    out = fast(q, k, v)
    torch.testing.assert_close(out, ref(q, k, v))
    qh, kh = fast.encode(q), fast.encode(k)
    dist = torch.tensor(
        [[[int((qh[b, i] ^ kh[b, j]).sum()) for j in range(7)] for i in range(5)] for b in range(2)]
    )
    w = torch.softmax(6.0 * (1 - 2 * dist.double() / DIM), -1)
    torch.testing.assert_close(out, w @ v)
    torch.testing.assert_close(fast(qh, kh, v), out)  # hypervector inputs directly


def test_attention_causal_and_mask():
    att = HDCAttention(in_dim=4, causal=True)
    g = gen(11)
    x = torch.randn(1, 6, 4, generator=g)
    v = torch.randn(1, 6, 2, generator=g)
    out = att(x, x, v)
    torch.testing.assert_close(out[0, 0], v[0, 0])
    v2 = v.clone()
    v2[:, 3:] += 10
    torch.testing.assert_close(att(x, x, v2)[:, :3], out[:, :3])
