"""Convolution networks, wasm vs PyTorch eager: the zoo CNNs plus a ResNet-18 and a MobileNetV2 at 224x224.

    .venv/bin/python bench/conv.py [--models cnn,resnet,mobilenet,resnet18,mobilenet_v2] [--repeat 7]
                                   [--out-dir DIR] [--compare DIR] [--compile-only]

Compiles each model (validated against torch), then times wasm and torch (1 thread) interleaved in one
process: median of `repeat` rounds after warm-up, ratio = wasm / torch. Times are CPU time of the
calling thread (time.thread_time; both run on it), so other processes on a shared machine do not
inflate them. `--compare DIR` also times the artifacts already in DIR/<model> (e.g. made by an older
checkout with `--compile-only`) in the same rounds.
torchvision is not installed, so ResNet-18 and MobileNetV2 are built here from their published layouts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import wasm_torch
from wasm_torch.zoo import build
from wasm_torch.zoo.models import ResNetish


def resnet18() -> nn.Module:
    """ResNet-18: 7x7/2 stem + 3x3/2 max pool, BasicBlocks [2, 2, 2, 2] at 64..512 channels, 1000 classes."""
    return ResNetish((64, 128, 256, 512), classes=1000)


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hid = cin * t
        layers: list[nn.Module] = []
        if t != 1:
            layers += [nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6()]
        layers += [
            nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False),
            nn.BatchNorm2d(hid),
            nn.ReLU6(),
            nn.Conv2d(hid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.body = nn.Sequential(*layers)
        self.res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.res else self.body(x)


def mobilenet_v2() -> nn.Module:
    """MobileNetV2 (width 1.0): torchvision's (t, c, n, s) table, 1280-channel head, 1000 classes."""
    cfg = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()]
    cin = 32
    for t, c, n, s in cfg:
        for i in range(n):
            layers.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000))


def model_and_input(name: str) -> tuple[nn.Module, torch.Tensor]:
    if name in ("resnet18", "mobilenet_v2"):
        torch.manual_seed(0)
        model = (resnet18 if name == "resnet18" else mobilenet_v2)().eval()
        return model, torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    model, example, _ = build(name)
    return model, example[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="cnn,resnet,mobilenet,resnet18,mobilenet_v2")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out-dir", default="")
    ap.add_argument("--compare", default="", help="also time the artifacts in this folder")
    ap.add_argument("--compile-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(a.out_dir or tempfile.mkdtemp(prefix="wt_conv_bench_"))
    rows = []
    for name in a.models.split(","):
        model, x = model_and_input(name)
        t0 = time.perf_counter()
        art = wasm_torch.compile(model, (x,), root / name)
        print(
            f"{name}: compiled in {time.perf_counter() - t0:.1f} s, model.wasm {art.code_bytes:,} B, "
            f"arena {art.manifest.raw['memory']['arena_bytes']:,} B",
            flush=True,
        )
        if a.compile_only:
            continue
        mods = {"ours": wasm_torch.load(art)}
        if a.compare:
            mods["compare"] = wasm_torch.load(Path(a.compare) / name)
        xn = x.numpy()
        runs = {
            "torch": lambda model=model, x=x: model(x),
            **{k: (lambda m=m, xn=xn: m(xn)) for k, m in mods.items()},
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        with torch.no_grad():
            for fn in runs.values():
                fn()
            for _ in range(a.repeat):
                for k, fn in runs.items():
                    t0 = time.thread_time()
                    fn()
                    times[k].append((time.thread_time() - t0) * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((name, art.code_bytes, med))
        cmp = (
            f"  compare {med['compare']:8.2f} ms ({med['compare'] / med['torch']:.2f}x)" if a.compare else ""
        )
        print(
            f"{name}: torch {med['torch']:.2f} ms  ours {med['ours']:.2f} ms ({med['ours'] / med['torch']:.2f}x)"
            + cmp,
            flush=True,
        )
    if rows:
        print(
            f"\n{'model':<14}{'code B':>9}{'torch ms':>10}{'ours ms':>10}{'ratio':>7}"
            + ("  compare" * bool(a.compare))
        )
        for name, code, med in rows:
            extra = f"{med['compare']:>9.2f} ({med['compare'] / med['torch']:.2f}x)" if a.compare else ""
            print(
                f"{name:<14}{code:>9,}{med['torch']:>10.2f}{med['ours']:>10.2f}"
                f"{med['ours'] / med['torch']:>7.2f}{extra}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
