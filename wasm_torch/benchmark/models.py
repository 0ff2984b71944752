"""The benchmark suite: which models `wasm-torch bench` runs, at which shapes.

Each case builds (model in eval mode, example inputs for compile/export, fresh inputs to time and
compare on) from fixed seeds. Shapes are static: every system gets the same fixed-shape model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BenchmarkError

BASES = ("ours", "ortweb", "ort_native", "torch")
BASE_LABELS = {
    "ours": "ours (wasmtime)",
    "ortweb": "ORT-Web 1.30 (Node)",
    "ort_native": "ORT native",
    "torch": "PyTorch",
}
THREADS = (1, 2)  # the thread counts every system runs at (`--threads`)


def system_key(base: str, threads: int) -> str:
    """The JSON key prefix of a system at a thread count: ours, ours_2t, ortweb, ortweb_2t, ..."""
    return base if threads == 1 else f"{base}_{threads}t"


def systems(threads: tuple[int, ...] = THREADS) -> tuple[str, ...]:
    return tuple(system_key(b, t) for b in BASES for t in threads)


def label(key: str) -> str:
    """'ours_2t' -> 'ours (wasmtime), 2 threads'."""
    head, _, tail = key.rpartition("_")
    base, t = (head, tail[:-1]) if head and tail.endswith("t") and tail[:-1].isdigit() else (key, "1")
    return f"{BASE_LABELS[base]}, {t} thread{'s' if t != '1' else ''}"


SYSTEMS = systems()  # the JSON's key prefixes: ours_ms, ours_2t_ms, ortweb_ms, ...
LABELS = {k: label(k) for k in systems((1, 2, 4, 8))}


@dataclass(frozen=True)
class BenchCase:
    name: str
    description: str
    make: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator], tuple[torch.Tensor, ...]]
    flops: int = 0  # per call, for a GFLOP/s column (the GEMM row)


def _minilm() -> nn.Module:
    from ..zoo import minilm

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return minilm()[0]


def _tokens(seq: int, vocab: int) -> Callable[[torch.Generator], tuple[torch.Tensor, ...]]:
    def make(g: torch.Generator) -> tuple[torch.Tensor, ...]:
        ids = torch.randint(1000, vocab, (1, seq), generator=g)
        ids[0, 0], ids[0, -1] = 101, 102  # [CLS] ... [SEP], as the tokenizer would
        return ids, torch.ones_like(ids)

    return make


def _resnet18() -> nn.Module:
    from ..zoo.bench_models import ResNet18, calibrate_bn

    return calibrate_bn(ResNet18(), (2, 3, 224, 224), seed=7)


def _mobilenet_v2() -> nn.Module:
    from ..zoo.bench_models import MobileNetV2, calibrate_bn

    return calibrate_bn(MobileNetV2(), (2, 3, 224, 224), seed=7)


def _mlp() -> nn.Module:
    from ..zoo.bench_models import MLP784

    return MLP784()


def _gpt2() -> nn.Module:
    from ..zoo.bench_models import gpt2_2layer

    return gpt2_2layer()


def _gemm() -> nn.Module:
    from ..zoo.bench_models import ConstGemm

    return ConstGemm(512)


def _resnet50() -> nn.Module:
    from .big_models import resnet50

    return resnet50()


def _vit_b_16() -> nn.Module:
    from .big_models import vit_b_16

    return vit_b_16()


def _image(g: torch.Generator) -> tuple[torch.Tensor, ...]:
    return (torch.randn(1, 3, 224, 224, generator=g),)


CASES: dict[str, BenchCase] = {
    c.name: c
    for c in [
        BenchCase(
            "minilm_seq16", "all-MiniLM-L6-v2 (real weights), batch 1, seq 16", _minilm, _tokens(16, 30522)
        ),
        BenchCase(
            "minilm_seq128", "all-MiniLM-L6-v2 (real weights), batch 1, seq 128", _minilm, _tokens(128, 30522)
        ),
        BenchCase("resnet18", "ResNet-18, 1x3x224x224, 1000 classes", _resnet18, _image),
        BenchCase(
            "mobilenet_v2", "MobileNetV2 (width 1.0), 1x3x224x224, 1000 classes", _mobilenet_v2, _image
        ),
        BenchCase(
            "mlp", "MLP 784-1024-1024-10 (ReLU), batch 8", _mlp, lambda g: (torch.randn(8, 784, generator=g),)
        ),
        BenchCase(
            "gpt2_2layer",
            "GPT-2 decoder (768 wide, 12 heads, vocab 50257), 2 layers, batch 1, seq 128",
            _gpt2,
            lambda g: (torch.randint(0, 50257, (1, 128), generator=g),),
        ),
        BenchCase(
            "gemm512",
            "x @ W, x 512x512, constant W 512x512 (GEMM microbenchmark)",
            _gemm,
            lambda g: (torch.randn(512, 512, generator=g),),
            flops=2 * 512**3,
        ),
        BenchCase("resnet50", "ResNet-50 (bottleneck [3,4,6,3]), 1x3x224x224, 1000 classes", _resnet50, _image),
        BenchCase("vit_b_16", "ViT-B/16 (12 layers, 768 wide, 12 heads), 1x3x224x224, 1000 classes", _vit_b_16, _image),
    ]
}


def select(names: list[str] | None) -> list[BenchCase]:
    """The cases named (all, in suite order, when None); an unknown name is a BenchmarkError."""
    if not names:
        return list(CASES.values())
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise BenchmarkError(f"unknown benchmark model(s) {unknown}; choose from {sorted(CASES)}")
    return [CASES[n] for n in names]


def build(
    case: BenchCase, seed: int = 0
) -> tuple[nn.Module, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """(model, example inputs for compile/export, fresh inputs for timing and comparison)."""
    torch.manual_seed(seed)
    model = case.make().eval()
    example = case.inputs(torch.Generator().manual_seed(seed + 1))
    fresh = case.inputs(torch.Generator().manual_seed(seed + 2))
    return model, example, fresh
