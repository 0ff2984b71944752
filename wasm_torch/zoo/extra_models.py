"""Two architectures the public zoos above do not cover: a UNet (image-to-image) and an audio
encoder-decoder conv stack. Written the way such models usually are, not tuned to the compiler."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(min(8, cout // 2), cout), nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(min(8, cout // 2), cout), nn.SiLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UNet(nn.Module):
    """Encoder (conv blocks + max pooling), decoder (ConvTranspose2d up, skip concatenation), and a
    bilinear side output upsampled from the bottleneck."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), cin: int = 3, cout: int = 2):
        super().__init__()
        self.down = nn.ModuleList()
        c = cin
        for w in widths:
            self.down.append(_Block(c, w))
            c = w
        self.mid = _Block(c, c * 2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        c = c * 2
        for w in reversed(widths):
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.dec.append(_Block(2 * w, w))
            c = w
        self.head = nn.Conv2d(c, cout, 1)
        self.side = nn.Conv2d(widths[-1] * 2, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        mid = self.mid(x)
        x = mid
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], 1))
        side = F.interpolate(self.side(mid), size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.head(x) + side


class AudioConvStack(nn.Module):
    """A waveform encoder-decoder (Demucs / Wave-U-Net style): strided Conv1d + GLU down,
    ConvTranspose1d up with skips, InstanceNorm1d, nearest upsampling of a side branch. The input
    length must be a multiple of 4**depth."""

    def __init__(self, channels: int = 64, depth: int = 3):
        super().__init__()
        self.enc = nn.ModuleList()
        self.dec = nn.ModuleList()
        c = 1
        for i in range(depth):
            w = channels * 2**i
            self.enc.append(nn.Sequential(nn.Conv1d(c, w, 8, stride=4, padding=2), nn.ReLU(),
                                          nn.Conv1d(w, 2 * w, 1), nn.GLU(dim=1)))
            c = w
        self.norm = nn.InstanceNorm1d(c, affine=True)
        for i in reversed(range(depth)):
            w = channels * 2**i
            out = 1 if i == 0 else channels * 2 ** (i - 1)
            self.dec.append(nn.Sequential(nn.Conv1d(w, 2 * w, 3, padding=1), nn.GLU(dim=1),
                                          nn.ConvTranspose1d(w, out, 8, stride=4, padding=2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for e in self.enc:
            skips.append(x)
            x = e(x)
        x = self.norm(x)
        side = F.interpolate(x.mean(1, keepdim=True), size=skips[0].shape[-1], mode="nearest")
        for d, s in zip(self.dec, reversed(skips), strict=True):
            x = d(x) + s  # lengths match when the input length is a multiple of 4**depth
        return x + side
