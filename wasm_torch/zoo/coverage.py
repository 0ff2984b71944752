"""The op-coverage zoo: every torchvision classification and segmentation model at 224x224, the
Hugging Face families of `hf_families.py`, a UNet and an audio conv stack — with random weights
made meaningful, so comparing wasm with torch says something.

`prepare(model, make_inputs)` does what random weights need before a comparison:
- batch-norm running statistics are calibrated on random inputs (a few forward passes in training
  mode with a cumulative average); the untouched statistics (mean 0, var 1) would leave deep
  convnets' activations exploding or vanishing;
- weights that are initialised to zero (torchvision's ViT head, zero-init residual gammas) are
  re-initialised, so the output depends on the whole network and is not ~0.

    entries = coverage_entries(size="real")             # name -> CoverageEntry
    model, inputs = entries["resnet18"].build(seed=0)     # eval mode, prepared; inputs(generator)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import hf_families, torchvision_models
from .extra_models import AudioConvStack, UNet

Inputs = Callable[[torch.Generator], tuple[torch.Tensor, ...]]
_NORM_WEIGHTS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class CoverageEntry:
    name: str
    zoo: str  # "torchvision-classification" | "torchvision-segmentation" | "huggingface" | "other"
    make: Callable[[], nn.Module]
    inputs: Inputs
    note: str = ""

    def build(self, seed: int = 0) -> tuple[nn.Module, Inputs]:
        torch.manual_seed(seed)
        model = self.make()
        prepare(model, self.inputs, seed)
        return model.eval(), self.inputs


def reinit_zero_weights(model: nn.Module) -> list[str]:
    """Re-initialise every all-zero weight (not bias): norm scales to 1, linear / conv weights to
    N(0, 1/fan_in). Returns the parameter names it changed."""
    changed = []
    for mname, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if not isinstance(w, nn.Parameter) or w.numel() == 0 or bool(w.detach().abs().max() > 0):
            continue
        with torch.no_grad():
            if isinstance(mod, _NORM_WEIGHTS):
                w.fill_(1.0)
            else:
                fan_in = w[0].numel() if w.dim() > 1 else w.numel()
                w.normal_(0.0, 1.0 / math.sqrt(max(fan_in, 1)))
        changed.append(f"{mname}.weight")
    return changed


def calibrate_batch_norm(model: nn.Module, make_inputs: Inputs, seed: int = 0, batches: int = 2) -> int:
    """Running statistics of every batch norm from `batches` random inputs (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
        m.train()
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for _ in range(batches):  # two draws per batch: a batch of one has no spread on a 1x1 map
            a, b = make_inputs(g), make_inputs(g)
            model(*[torch.cat([x, y]) for x, y in zip(a, b, strict=True)])
    for m in bns:
        m.eval()
    return len(bns)


def prepare(model: nn.Module, make_inputs: Inputs, seed: int = 0) -> dict[str, Any]:
    changed = reinit_zero_weights(model)
    n_bn = calibrate_batch_norm(model, make_inputs, seed)
    model.eval()
    return {"reinitialised": changed, "batch_norms": n_bn}


def _pixels(size: int) -> Inputs:
    return lambda g: (torch.randn(1, 3, size, size, generator=g),)


class SegmentationOut(nn.Module):
    """torchvision segmentation models return {"out": ...}; compile the tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def _tv_classifier(name: str) -> Callable[[], nn.Module]:
    return lambda: torchvision_models.models().get_model(name, weights=None)


def _tv_segmentation(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        m = torchvision_models.models().get_model(name, weights=None, weights_backbone=None, aux_loss=False)
        return SegmentationOut(m)

    return make


# inception_v3 is built for 299x299 inputs but runs at 224 too; the report uses 224 for every model.
TV_SIZE = 224


def torchvision_entries() -> dict[str, CoverageEntry]:
    out = {}
    for n in torchvision_models.classification_names():
        out[n] = CoverageEntry(n, "torchvision-classification", _tv_classifier(n), _pixels(TV_SIZE))
    for n in torchvision_models.segmentation_names():
        out[n] = CoverageEntry(n, "torchvision-segmentation", _tv_segmentation(n), _pixels(TV_SIZE))
    return out


def hf_entries(size: str = "real") -> dict[str, CoverageEntry]:
    out = {}
    for f in hf_families.FAMILIES.values():
        out[f"hf_{f.name}"] = CoverageEntry(
            f"hf_{f.name}",
            "huggingface",
            (lambda f=f: f.make(size)),
            f.inputs(size),
            f"shapes of {f.checkpoint}" + (", 2 layers, vocab 8192" if size == "real" else " (small config)"),
        )
    return out


def other_entries(size: str = "real") -> dict[str, CoverageEntry]:
    px = 128 if size == "real" else 32
    samples = 16000 if size == "real" else 2048  # multiples of 4**3
    return {
        "unet": CoverageEntry(
            "unet", "other", lambda: UNet(widths=(32, 64, 128) if size == "real" else (8, 16)), _pixels(px),
            "ConvTranspose2d, GroupNorm, bilinear upsampling, skip concatenation",
        ),
        "audio_conv_stack": CoverageEntry(
            "audio_conv_stack", "other", lambda: AudioConvStack(channels=64 if size == "real" else 16),
            lambda g: (torch.randn(1, 1, samples, generator=g),),
            "Conv1d / ConvTranspose1d encoder-decoder, InstanceNorm1d, GLU, nearest upsampling",
        ),
    }


def coverage_entries(size: str = "real", torchvision: bool = True) -> dict[str, CoverageEntry]:
    out: dict[str, CoverageEntry] = {}
    if torchvision:
        out.update(torchvision_entries())
    out.update(hf_entries(size))
    out.update(other_entries(size))
    return out
