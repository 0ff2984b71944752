"""Full-size models for the peer benchmark (`wasm-torch bench`, docs/benchmarks.md).

The zoo in models.py is sized for fast tests; these are the real topologies the benchmark needs,
written by hand because torchvision is not a dependency: ResNet-18, MobileNetV2 (width 1.0), an
MLP 784-1024-1024-10, a 2-layer GPT-2 decoder (Hugging Face `GPT2Model`, GPT-2 small widths) and a
512x512 constant-weight GEMM. Weights are random from a fixed seed; batch-norm statistics are set
by one calibration pass so activations have realistic scale (errors are then meaningful).
"""

from __future__ import annotations

import torch
from torch import nn

from .models import BasicBlock

# MobileNetV2 (Sandler et al. 2018, table 2): expansion t, channels c, repeats n, first stride s
MOBILENET_V2_CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2)]
MOBILENET_V2_CFG += [(6, 320, 1, 1)]


class ResNet18(nn.Module):
    """ResNet-18: 7x7/2 stem, 3x3/2 max-pool, BasicBlocks [2, 2, 2, 2] at 64..512 channels, fc 1000."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        blocks: list[nn.Module] = []
        cin = 64
        for i, w in enumerate((64, 128, 256, 512)):
            blocks += [BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w)]
            cin = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def _conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True
) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)]
    layers.append(nn.BatchNorm2d(cout))
    return [*layers, nn.ReLU6()] if act else layers


class InvertedResidualV2(nn.Module):
    """MobileNetV2 block: [1x1 expand] -> 3x3 depthwise -> 1x1 linear projection, residual if shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hid = cin * expand
        layers = _conv_bn(cin, hid, 1) if expand != 1 else []
        layers += _conv_bn(hid, hid, 3, stride, groups=hid) + _conv_bn(hid, cout, 1, act=False)
        self.body = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.use_res else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNetV2, width 1.0: 32-channel stem, the standard 17 inverted residuals, 1x1 to 1280, fc 1000."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = _conv_bn(3, 32, 3, 2)
        cin = 32
        for t, c, n, s in MOBILENET_V2_CFG:
            for i in range(n):
                layers.append(InvertedResidualV2(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*layers, *_conv_bn(cin, 1280, 1))
        self.fc = nn.Linear(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class MLP784(nn.Module):
    """784-1024-1024-10 with ReLU (MNIST-sized input, wide hidden layers)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU())
        self.out = nn.Linear(1024, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(x))


class ConstGemm(nn.Module):
    """y = x @ W with a constant 512x512 W: the GEMM microbenchmark as a model (packed-weight path)."""

    def __init__(self, n: int = 512):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n, n) / n**0.5, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


class GPT2Hidden(nn.Module):
    """Hugging Face GPT2Model returning last_hidden_state for input_ids (causal mask built inside)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).last_hidden_state


def gpt2_2layer(vocab: int = 50257) -> nn.Module:
    """GPT-2 small widths (768, 12 heads, 3072 MLP), 2 layers, random init; eager attention (see zoo)."""
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(vocab_size=vocab, n_embd=768, n_layer=2, n_head=12, attn_implementation="eager")
    return GPT2Hidden(GPT2Model(cfg))


def calibrate_bn(model: nn.Module, shape: tuple[int, ...], seed: int) -> nn.Module:
    """Set every BatchNorm's running statistics from one pass over random data, then eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the statistics exactly
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        model(torch.randn(shape, generator=g))
    return model.eval()


__all__ = ["MLP784", "ConstGemm", "GPT2Hidden", "MobileNetV2", "ResNet18", "calibrate_bn", "gpt2_2layer"]
