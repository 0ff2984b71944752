"""Hyperdimensional computing (HDC) with exactly 10,000-bit binary hypervectors: memory and attention.

Binary spatter codes (Kanerva 2009, "Hyperdimensional Computing: An Introduction to Computing in
Distributed Representation with High-Dimensional Random Vectors"; Kanerva 1997 "Fully distributed
representation"). Hypervectors are bool tensors (..., 10000); packed form is 1,250 bytes per vector.

    bind(a, b)    = a XOR b                 (self-inverse, distance-preserving, result ⟂ a, b)
    bundle(a_i)   = bitwise majority        (ties broken by a fixed random vector; result close to every a_i)
    permute(a, s) = cyclic shift by s over exactly 10,000 bits (distance-preserving, result ⟂ a)
    H(a, b)       = popcount(a XOR b) / 10,000,   sim(a, b) = 1 − 2 H(a, b) ∈ [−1, 1]

Two random hypervectors have H ≈ 0.5 ± 0.005; a majority bundle of n (odd) members is at expected distance
1/2 − C(n−1, (n−1)/2)/2ⁿ from each member. HDC attention encodes real vectors by random-hyperplane hashing
hv(x) = [x R > 0] (Charikar 2002), for which E[H(hv(x), hv(y))] = angle(x, y)/π, and attends with
softmax_j(β · sim(q_i, k_j)) over real-valued values. The fast path evaluates Hamming distances as a ±1
matmul; `reference=True` uses XOR plus a 256-entry popcount table on the packed bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._util import make_config
from .attention import causal_mask, masked_softmax

DIM = 10_000  # bits per hypervector, exactly
BYTES = DIM // 8  # 1,250 bytes packed
TIE_SEED = 0x5EED
_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int32)
_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def random_hypervectors(n: int, generator: torch.Generator, dim: int = DIM) -> Tensor:
    """(n, dim) independent fair bits."""
    return torch.randint(0, 2, (n, dim), generator=generator, dtype=torch.uint8).bool()


def bind(a: Tensor, b: Tensor) -> Tensor:
    return a ^ b


def permute(a: Tensor, shifts: int = 1) -> Tensor:
    return torch.roll(a, shifts, dims=-1)


def bundle(vs: Tensor, tie_breaker: Tensor | None = None) -> Tensor:
    """Bitwise majority over axis −2 of (..., n, dim). Even-n ties take the tie-breaker's bit."""
    n = vs.shape[-2]
    count = vs.to(torch.int32).sum(dim=-2)  # (..., dim)
    if tie_breaker is None:
        tie_breaker = random_hypervectors(1, torch.Generator().manual_seed(TIE_SEED), vs.shape[-1])[0]
    return torch.where(2 * count == n, tie_breaker.to(vs.device), 2 * count > n)


def pack(a: Tensor) -> Tensor:
    """bool (..., dim) → uint8 (..., dim/8), most significant bit first."""
    bits = a.reshape(*a.shape[:-1], a.shape[-1] // 8, 8).to(torch.uint8)  # (..., dim/8, 8)
    return (bits * _BIT_WEIGHTS.to(a.device)).sum(-1, dtype=torch.uint8)


def unpack(p: Tensor) -> Tensor:
    """uint8 (..., dim/8) → bool (..., dim)."""
    bits = (p.unsqueeze(-1) & _BIT_WEIGHTS.to(p.device)) != 0  # (..., dim/8, 8)
    return bits.reshape(*p.shape[:-1], p.shape[-1] * 8)


def hamming_packed(a: Tensor, b: Tensor) -> Tensor:
    """Bit distance between packed vectors (broadcasting), via XOR and a popcount table."""
    return _POPCOUNT.to(a.device)[(a ^ b).long()].sum(-1)


def hamming_matrix(a: Tensor, b: Tensor) -> Tensor:
    """(..., N, dim) × (..., M, dim) bool → (..., N, M) bit distances, as (dim − ⟨±a, ±b⟩)/2 (exact in fp32)."""
    pa = a.float() * 2 - 1
    pb = b.float() * 2 - 1
    return (a.shape[-1] - torch.matmul(pa, pb.transpose(-2, -1))) / 2


def similarity(a: Tensor, b: Tensor) -> Tensor:
    """1 − 2·H/dim for matching shapes (…, dim) → (…)."""
    return 1 - 2 * (a ^ b).float().mean(-1)


class HDCMemory(nn.Module):
    """Item (clean-up) memory of up to `capacity` hypervectors plus key→value records.

    `store` appends items; `cleanup` returns the stored item nearest to each query (…, dim);
    `record(keys, values)` superposes bind(k_i, v_i) into one hypervector and `recall(record, key)` unbinds
    and cleans up.
    """

    items: Tensor
    count: Tensor

    def __init__(self, capacity: int = 1024) -> None:
        super().__init__()
        self.capacity = capacity
        self.register_buffer("items", torch.zeros(capacity, DIM, dtype=torch.bool))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def store(self, hv: Tensor) -> Tensor:
        n = hv.shape[0]
        start = int(self.count)
        if start + n > self.capacity:
            raise ValueError(f"memory full ({self.capacity} items)")
        self.items[start : start + n] = hv
        self.count += n
        return torch.arange(start, start + n)

    def cleanup(self, query: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Nearest stored items: (items (…, dim), indices (…), similarities (…))."""
        stored = self.items[: int(self.count)]
        d = hamming_matrix(query.reshape(-1, DIM), stored)  # (Q, N)
        dist, idx = d.min(dim=-1)
        shape = query.shape[:-1]
        return stored[idx].reshape(*shape, DIM), idx.reshape(shape), (1 - 2 * dist / DIM).reshape(shape)

    def topk(self, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Indices and similarities of the k nearest stored items, (…, k)."""
        stored = self.items[: int(self.count)]
        sim = 1 - 2 * hamming_matrix(query.reshape(-1, DIM), stored) / DIM
        vals, idx = sim.topk(k, dim=-1)
        return idx.reshape(*query.shape[:-1], k), vals.reshape(*query.shape[:-1], k)

    @staticmethod
    def record(keys: Tensor, values: Tensor) -> Tensor:
        return bundle(bind(keys, values))

    def recall(self, record: Tensor, key: Tensor) -> Tensor:
        return self.cleanup(bind(record, key))[0]


@dataclass(frozen=True)
class HDCAttentionConfig:
    in_dim: int = 64
    beta: float = 10.0  # inverse temperature on sim ∈ [−1, 1]
    causal: bool = False
    seed: int = 0  # hyperplanes R


class HDCAttention(nn.Module):
    """Attention whose scores are Hamming similarities of 10,000-bit codes (see module docstring).

    q, k: real (B, T, in_dim) — hashed with the fixed hyperplanes — or bool hypervectors (B, T, 10000);
    v: real (B, Tk, Dv). `mask` (…, Tq, Tk) bool, True = attend.
    """

    planes: Tensor

    def __init__(
        self, config: HDCAttentionConfig | None = None, reference: bool = False, **overrides: Any
    ) -> None:
        super().__init__()
        self.config = cfg = make_config(HDCAttentionConfig, config, overrides)
        self.reference = reference
        g = torch.Generator().manual_seed(cfg.seed)
        self.register_buffer("planes", torch.randn(cfg.in_dim, DIM, generator=g))

    def encode(self, x: Tensor) -> Tensor:
        """Random-hyperplane code: bool (…, 10000)."""
        return torch.matmul(x, self.planes.to(x.dtype)) > 0

    def scores(self, qh: Tensor, kh: Tensor) -> Tensor:
        if self.reference:
            pq, pk = pack(qh), pack(kh)
            dist = hamming_packed(pq.unsqueeze(-2), pk.unsqueeze(-3)).float()  # (B, Tq, Tk) via XOR/popcount
        else:
            dist = hamming_matrix(qh, kh)
        return self.config.beta * (1 - 2 * dist / DIM)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        qh = q if q.dtype == torch.bool else self.encode(q)
        kh = k if k.dtype == torch.bool else self.encode(k)
        s = self.scores(qh, kh).to(v.dtype)
        if self.config.causal:
            cm = causal_mask(s.shape[-2], s.shape[-1], s.device)
            mask = cm if mask is None else mask & cm
        return torch.matmul(masked_softmax(s, mask), v)
