"""F.interpolate / nn.Upsample: aten.upsample_{nearest,bilinear}2d (.vec and .default) and
_upsample_nearest_exact2d -> the `resize2d` IR op (ops/resize.py). Other modes torch.export
decomposes itself (linear 1-d, nearest 1-d, nearest-exact, bicubic become index arithmetic)."""

from __future__ import annotations

from typing import Any

import torch

from ....errors import UnsupportedOpError
from ..aten import _args, rule
from ..context import Lowering


def _scales(v: Any) -> tuple[float | None, float | None]:
    if v is None:
        return (None, None)
    v = list(v)
    if len(v) != 2:
        raise UnsupportedOpError(f"2-d interpolation with {len(v)} scale factors")
    return tuple(None if s is None else float(s) for s in v)  # type: ignore[return-value]


def _resize(mode: str) -> Any:
    def lower(L: Lowering, fx: torch.fx.Node) -> str:
        x = L.value(fx.args[0])
        t = L.type_of(x)
        target = str(fx.target)
        if mode == "bilinear":  # (x, output_size, align_corners, scale_factors | scales_h, scales_w)
            args = _args(fx, None, False, None, None)
            align = bool(args[2])
            scales = _scales(args[3]) if target.endswith(".vec") else (args[3], args[4])
        else:  # (x, output_size, scale_factors | scales_h, scales_w)
            args = _args(fx, None, None, None)
            align = False
            scales = _scales(args[2]) if target.endswith(".vec") else (args[2], args[3])
        size = tuple(L.shape_of(fx)[2:])
        if t.dtype != "f32":
            raise UnsupportedOpError(f"interpolation of {t.dtype} tensors (float32 only)")
        if not all(isinstance(d, int) for d in (*t.shape[2:], *size)):
            raise UnsupportedOpError("interpolation over dynamic spatial sizes")
        scales = tuple(None if s is None else float(s) for s in scales)
        return L.emit("resize2d", [x], {"mode": mode, "align_corners": align, "size": size, "scales": scales}, n_out=2)[0]

    return lower


rule("upsample_nearest2d.vec", "upsample_nearest2d.default")(_resize("nearest"))
rule("_upsample_nearest_exact2d.vec", "_upsample_nearest_exact2d.default")(_resize("nearest_exact"))
rule("upsample_bilinear2d.vec", "upsample_bilinear2d.default")(_resize("bilinear"))
